using System.Buffers.Binary;
using HandlerRuntime.Handlers.Shared;
using System.Runtime.InteropServices;
using HandlerRuntime.Sdk;
using Microsoft.Win32.SafeHandles;

namespace HandlerRuntime.Handlers.Qcow;

/// <summary>
/// The bytes of one image file: positional reads and writes and a durability barrier.
/// Abstract so that tests can record writes and replay a power loss between barriers.
/// </summary>
internal abstract class ImageStorage : IDisposable
{
    /// <summary>The path, for messages.</summary>
    public abstract string Name { get; }

    public abstract bool Writable { get; }

    public abstract long Length { get; }

    /// <summary>Fills <paramref name="destination"/>; bytes past the end of the file read as zeros.</summary>
    public abstract ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default);

    public abstract ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default);

    /// <summary>
    /// Reads a table of <paramref name="entries"/> big-endian 64-bit entries (an L1, L2 or
    /// refcount table): qcow stores every table this way, and this is the one decode of it.
    /// </summary>
    public async ValueTask<ulong[]> ReadTableAsync(long offset, long entries, CancellationToken cancellationToken = default)
    {
        var bytes = new byte[entries * sizeof(ulong)];
        await ReadAsync(offset, bytes, cancellationToken);
        var table = MemoryMarshal.Cast<byte, ulong>(bytes).ToArray();
        if (BitConverter.IsLittleEndian)
            BinaryPrimitives.ReverseEndianness(table, table);
        return table;
    }

    /// <summary>Makes every completed write durable (fdatasync).</summary>
    public abstract void Sync();

    public abstract void Dispose();
}

/// <summary>A regular file through pread/pwrite and fdatasync.</summary>
internal sealed class FileStorage : ImageStorage
{
    private readonly SafeFileHandle handle;

    private FileStorage(SafeFileHandle handle, string path, bool writable)
    {
        this.handle = handle;
        Name = path;
        Writable = writable;
    }

    public static FileStorage Open(string path, bool writable)
    {
        try
        {
            var handle = File.OpenHandle(path, FileMode.Open, writable ? FileAccess.ReadWrite : FileAccess.Read, FileShare.ReadWrite);
            return new FileStorage(handle, path, writable);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HandlerConfigException($"{path} cannot be opened{(writable ? " for writing" : "")}: {e.Message}", e);
        }
    }

    public override string Name { get; }

    public override bool Writable { get; }

    public override long Length => RandomAccess.GetLength(handle);

    public override async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        while (!destination.IsEmpty)
        {
            var n = await RandomAccess.ReadAsync(handle, destination, offset, cancellationToken);
            if (n == 0)
            {
                destination.Span.Clear();
                return;
            }
            destination = destination[n..];
            offset += n;
        }
    }

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        => RandomAccess.WriteAsync(handle, source, offset, cancellationToken);

    public override void Sync()
    {
        if (Posix.fdatasync((int)handle.DangerousGetHandle()) != 0)
            throw new DeviceIOException(Marshal.GetLastPInvokeError(), $"{Name}: fdatasync");
    }

    public override void Dispose() => handle.Dispose();
}
