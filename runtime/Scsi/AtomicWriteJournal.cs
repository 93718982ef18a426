using System.Buffers.Binary;
using System.Security.Cryptography;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi;

/// <summary>
/// Makes WRITE ATOMIC all or nothing across a crash, on any handler (SBC-4 4.29): the data
/// is first made durable in a one-record journal in the LU's state directory, then written
/// to the device with FUA, then the record is invalidated durably, and only then is GOOD
/// returned. A crash before the record is durable changes nothing; after, the restart
/// replays it (the write is idempotent); the invalidation before GOOD ensures a replay can
/// never clobber a later write. WRITE ATOMIC runs alone in the task set, so one record suffices.
/// </summary>
internal sealed class AtomicWriteJournal
{
    private const ulong Magic = 0x4852_5441_5731_3031; // "HRTAW101"
    private const int HeaderBytes = 8 + 8 + 4 + 32;     // magic, offset, length, SHA-256 of the data

    public AtomicWriteJournal(string stateDirectory)
    {
        Path = System.IO.Path.Combine(stateDirectory, "atomic-write.journal");
    }

    public string Path { get; }

    // Opened per operation: WRITE ATOMIC is rare, and its fsyncs dwarf an open.
    private FileStream Open() => new(Path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/> through the journal.</summary>
    public async ValueTask WriteAsync(IBlockDevice device, long offset, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var record = new byte[HeaderBytes + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(record, Magic);
        BinaryPrimitives.WriteInt64BigEndian(record.AsSpan(8), offset);
        BinaryPrimitives.WriteInt32BigEndian(record.AsSpan(16), data.Length);
        SHA256.HashData(data.Span, record.AsSpan(20, 32));
        data.Span.CopyTo(record.AsSpan(HeaderBytes));
        await using var file = Open();
        await RandomAccess.WriteAsync(file.SafeFileHandle, record, 0, ct);
        file.Flush(flushToDisk: true);
        await ApplyAsync(file, device, offset, data, ct);
    }

    /// <summary>Replays a record a crash left valid; false when there was none.</summary>
    public async ValueTask<bool> RecoverAsync(IBlockDevice device, CancellationToken ct)
    {
        if (!File.Exists(Path))
            return false;
        await using var file = Open();
        var length = RandomAccess.GetLength(file.SafeFileHandle);
        if (length < HeaderBytes)
            return false;
        var header = new byte[HeaderBytes];
        await RandomAccess.ReadAsync(file.SafeFileHandle, header, 0, ct);
        if (BinaryPrimitives.ReadUInt64BigEndian(header) != Magic)
            return false;
        var offset = BinaryPrimitives.ReadInt64BigEndian(header.AsSpan(8));
        var count = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(16));
        if (count <= 0 || length < HeaderBytes + count || offset < 0 || offset + count > device.Geometry.SizeBytes)
            return false; // torn while being written: the write never happened
        var data = new byte[count];
        await RandomAccess.ReadAsync(file.SafeFileHandle, data, HeaderBytes, ct);
        if (!SHA256.HashData(data).AsSpan().SequenceEqual(header.AsSpan(20, 32)))
            return false;
        await ApplyAsync(file, device, offset, data, ct);
        return true;
    }

    private static async ValueTask ApplyAsync(FileStream file, IBlockDevice device, long offset, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var caps = device.Capabilities;
        await device.WriteAsync(offset, data, (caps & DeviceCapabilities.Fua) != 0 ? WriteFlags.Fua : WriteFlags.None, ct);
        if ((caps & DeviceCapabilities.Fua) == 0 && (caps & DeviceCapabilities.Flush) != 0)
            await device.FlushAsync(ct);
        await RandomAccess.WriteAsync(file.SafeFileHandle, new byte[8], 0, ct); // invalidate before GOOD
        file.Flush(flushToDisk: true);
    }
}
