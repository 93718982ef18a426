using System.Runtime.InteropServices;
using HandlerRuntime.Sdk;
using Microsoft.Win32.SafeHandles;

namespace HandlerRuntime.Handlers.Zbc;

/// <summary>
/// The backing file: the header, the zone table's record slots and the data area, with
/// the syncs the durability rules need. Positional I/O only, so it is safe for concurrent use.
/// </summary>
internal sealed class ZbcStore : IDisposable
{
    private readonly SafeFileHandle handle;
    private readonly int fd;
    private bool punchUnsupported;

    private ZbcStore(SafeFileHandle handle, string path, ZbcLayout layout)
    {
        this.handle = handle;
        fd = (int)handle.DangerousGetHandle();
        Path = path;
        Layout = layout;
    }

    public string Path { get; }

    public ZbcLayout Layout { get; }

    /// <summary>
    /// Formats a new device at <paramref name="path"/>: every zone EMPTY (or conventional),
    /// the header written last. A missing file is built under a temporary name and renamed
    /// into place, so a crash never leaves a half-formatted device behind; an empty file is
    /// formatted where it is.
    /// </summary>
    public static void Format(string path, ZbcLayout layout, bool fileExistsEmpty)
    {
        var target = fileExistsEmpty ? path : $"{path}.formatting-{Environment.ProcessId}";
        try
        {
            using (var h = File.OpenHandle(target, fileExistsEmpty ? FileMode.Open : FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None))
            {
                RandomAccess.SetLength(h, layout.FileLength);
                var table = new byte[(long)layout.ZoneCount * ZbcFormat.ZoneRecordBytes];
                for (var i = 0; i < layout.ZoneCount; i++)
                {
                    var start = i * layout.ZoneBlocks;
                    var record = i < layout.ConventionalZones
                        ? new ZbcFormat.ZoneRecord(1, Math.Min(start + layout.ZoneBlocks, layout.CapacityBlocks), ZoneCondition.NotWritePointer, false)
                        : new ZbcFormat.ZoneRecord(1, start, ZoneCondition.Empty, false);
                    ZbcFormat.EncodeSlot(table.AsSpan(i * ZbcFormat.ZoneRecordBytes + ZbcFormat.SlotBytes), i, record); // sequence 1: odd slot
                }
                RandomAccess.Write(h, table, layout.ZoneTableOffset);
                Sync(h, data: true, path);
                RandomAccess.Write(h, ZbcFormat.EncodeHeader(layout), 0);
                Sync(h, data: false, path);
            }
            if (!fileExistsEmpty)
                File.Move(target, path);
            Libc.SyncDirectory(System.IO.Path.GetDirectoryName(path) ?? "/");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (!fileExistsEmpty)
                try { File.Delete(target); } catch (IOException) { }
            throw new HandlerConfigException($"{path} cannot be created: {e.Message}", e);
        }
    }

    /// <summary>Opens a formatted device file, taking an exclusive lock so no other LUN or process serves it at the same time.</summary>
    public static (ZbcStore Store, ZbcFormat.ZoneRecord[] Records) Open(string path, bool readOnly)
    {
        SafeFileHandle h;
        try
        {
            h = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (e.HResult == 11 || e.Message.Contains("lock", StringComparison.OrdinalIgnoreCase))
        {
            throw new HandlerConfigException($"{path} is in use by another LUN or process; a zbc device can be served by one LUN at a time.", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HandlerConfigException($"{path} cannot be opened: {e.Message}", e);
        }
        try
        {
            if (!Libc.IsRegularFile((int)h.DangerousGetHandle()))
                throw new HandlerConfigException($"{path} is not a regular file; a zbc device is emulated on a regular file.");
            var header = new byte[ZbcFormat.HeaderBytes];
            var n = RandomAccess.Read(h, header, 0);
            var layout = ZbcFormat.DecodeHeader(header.AsSpan(0, n), path, RandomAccess.GetLength(h), out var error)
                ?? throw new HandlerConfigException(error!);
            var records = ReadRecords(h, path, layout);
            return (new ZbcStore(h, path, layout), records);
        }
        catch
        {
            h.Dispose();
            throw;
        }
    }

    private static ZbcFormat.ZoneRecord[] ReadRecords(SafeFileHandle h, string path, ZbcLayout layout)
    {
        var table = new byte[(long)layout.ZoneCount * ZbcFormat.ZoneRecordBytes];
        if (RandomAccess.Read(h, table, layout.ZoneTableOffset) != table.Length)
            throw new HandlerConfigException($"{path}: the zone table is cut short; the file was truncated: restore it from a backup.");
        var records = new ZbcFormat.ZoneRecord[layout.ZoneCount];
        for (var i = 0; i < records.Length; i++)
        {
            var at = i * ZbcFormat.ZoneRecordBytes;
            var even = ZbcFormat.TryDecodeSlot(table.AsSpan(at, ZbcFormat.SlotBytes), i, out var a);
            var odd = ZbcFormat.TryDecodeSlot(table.AsSpan(at + ZbcFormat.SlotBytes, ZbcFormat.SlotBytes), i, out var b);
            if (!even && !odd)
                throw new HandlerConfigException($"{path}: both copies of zone {i}'s record are corrupt; restore the file from a backup (it is not reformatted).");
            var record = !odd || (even && a.Sequence > b.Sequence) ? a : b;
            if (Inconsistent(layout, i, record) is { } why)
                throw new HandlerConfigException($"{path}: zone {i}'s record is inconsistent ({why}); restore the file from a backup (it is not reformatted).");
            records[i] = record;
        }
        return records;
    }

    private static string? Inconsistent(ZbcLayout layout, int zone, ZbcFormat.ZoneRecord r)
    {
        var start = zone * layout.ZoneBlocks;
        var end = Math.Min(start + layout.ZoneBlocks, layout.CapacityBlocks);
        if (zone < layout.ConventionalZones)
            return r.Condition == ZoneCondition.NotWritePointer ? null : $"a conventional zone in condition {r.Condition}";
        if (r.WritePointer < start || r.WritePointer > end)
            return $"write pointer {r.WritePointer} outside [{start}, {end}]";
        return r.Condition switch
        {
            ZoneCondition.ReadOnly or ZoneCondition.Offline => null,
            ZoneCondition.Empty when r.WritePointer == start => null,
            ZoneCondition.Full when r.WritePointer == end => null,
            ZoneCondition.Closed when r.WritePointer > start && r.WritePointer < end => null,
            _ => $"condition {r.Condition} with write pointer {r.WritePointer}",
        };
    }

    // ---- data ----

    private long DataOffset(long lba) => Layout.DataOffset + lba * Layout.LbaSize;

    public async ValueTask ReadAsync(long lba, Memory<byte> destination, CancellationToken ct)
    {
        var offset = DataOffset(lba);
        while (!destination.IsEmpty)
        {
            var n = await RandomAccess.ReadAsync(handle, destination, offset, ct);
            if (n == 0)
            {
                destination.Span.Clear();
                return;
            }
            destination = destination[n..];
            offset += n;
        }
    }

    public ValueTask WriteAsync(long lba, ReadOnlyMemory<byte> source, CancellationToken ct)
        => RandomAccess.WriteAsync(handle, source, DataOffset(lba), ct);

    /// <summary>
    /// Makes <paramref name="blocks"/> blocks at <paramref name="lba"/> read as zeros by punching
    /// a hole. Where the filesystem cannot punch, writes zeros over the first
    /// <paramref name="mustZeroBlocks"/> of them and leaves the rest (reads above a write
    /// pointer return zeros anyway).
    /// </summary>
    public void ZeroBlocks(long lba, long blocks, long mustZeroBlocks)
    {
        if (blocks <= 0)
            return;
        if (!punchUnsupported)
        {
            if (Libc.fallocate(fd, Libc.FallocPunchHole | Libc.FallocKeepSize, DataOffset(lba), blocks * Layout.LbaSize) == 0)
                return;
            var errno = Marshal.GetLastPInvokeError();
            if (errno is not (Libc.EOPNOTSUPP or Libc.ENODEV))
                throw new ScsiException(Sense.WriteError, $"{Path}: fallocate failed with errno {errno}");
            punchUnsupported = true;
        }
        if (mustZeroBlocks <= 0)
            return;
        var zeros = new byte[(int)Math.Min(mustZeroBlocks * Layout.LbaSize, 1 << 20)];
        for (long done = 0, total = mustZeroBlocks * Layout.LbaSize; done < total;)
        {
            var n = (int)Math.Min(total - done, zeros.Length);
            RandomAccess.Write(handle, zeros.AsSpan(0, n), DataOffset(lba) + done);
            done += n;
        }
    }

    // ---- metadata ----

    /// <summary>Writes zone records to their slots (not synced: the caller orders the syncs).</summary>
    public void WriteRecords(List<(Zone Zone, ZbcFormat.ZoneRecord Record)> records)
    {
        Span<byte> slot = stackalloc byte[ZbcFormat.SlotBytes];
        foreach (var (zone, record) in records)
        {
            ZbcFormat.EncodeSlot(slot, zone.Index, record);
            RandomAccess.Write(handle, slot, ZbcFormat.SlotOffset(Layout, zone.Index, record.Sequence));
        }
    }

    /// <summary>fdatasync: every completed write of data and records is durable.</summary>
    public void SyncData() => Sync(handle, data: true, Path);

    /// <summary>fsync: also file metadata, such as punched holes.</summary>
    public void SyncAll() => Sync(handle, data: false, Path);

    private static void Sync(SafeFileHandle h, bool data, string path)
    {
        var fd = (int)h.DangerousGetHandle();
        if ((data ? Libc.fdatasync(fd) : Libc.fsync(fd)) != 0)
            throw new ScsiException(Sense.WriteError, $"{path}: {(data ? "fdatasync" : "fsync")} failed with errno {Marshal.GetLastPInvokeError()}");
    }

    public void Dispose() => handle.Dispose();
}
