using HandlerRuntime.Handlers.Shared;
using HandlerRuntime.Sdk;
using Microsoft.Win32.SafeHandles;

namespace HandlerRuntime.Handlers.Zbc;

/// <summary>
/// The backing file: the header, the zone table's record slots and the data area, with
/// the syncs the durability rules need. Positional I/O only, so it is safe for concurrent use.
/// </summary>
internal sealed class ZbcStore : IDisposable
{
    private readonly IBackingFile file;
    private bool punchUnsupported;

    private ZbcStore(IBackingFile file, string path, ZbcLayout layout)
    {
        this.file = file;
        Path = path;
        Layout = layout;
    }

    public string Path { get; }

    public ZbcLayout Layout { get; }

    /// <summary>
    /// Formats a new device at <paramref name="path"/>. A missing file is built under a
    /// temporary name and renamed into place, so a crash never leaves a half-formatted
    /// device behind; an empty file is formatted where it is.
    /// </summary>
    public static void FormatFile(string path, ZbcLayout layout, bool fileExistsEmpty)
    {
        var target = fileExistsEmpty ? path : $"{path}.formatting-{Environment.ProcessId}";
        try
        {
            using (var h = File.OpenHandle(target, fileExistsEmpty ? FileMode.Open : FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None))
            using (var f = new OsFile(h, path))
                Format(f, layout);
            if (!fileExistsEmpty)
                File.Move(target, path);
            Posix.SyncDirectory(System.IO.Path.GetDirectoryName(path) ?? "/");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (!fileExistsEmpty)
                try { File.Delete(target); } catch (IOException) { }
            throw new HandlerConfigException($"{path} cannot be created: {e.Message}", e);
        }
    }

    /// <summary>Writes a new device into an empty file: every zone EMPTY (or conventional), the header last, all synced.</summary>
    public static void Format(IBackingFile f, ZbcLayout layout)
    {
        f.SetLength(layout.FileLength);
        var table = new byte[(long)layout.ZoneCount * ZbcFormat.ZoneRecordBytes];
        for (var i = 0; i < layout.ZoneCount; i++)
        {
            var start = i * layout.ZoneBlocks;
            var record = i < layout.ConventionalZones
                ? new ZbcFormat.ZoneRecord(1, Math.Min(start + layout.ZoneBlocks, layout.CapacityBlocks), ZoneCondition.NotWritePointer, false)
                : new ZbcFormat.ZoneRecord(1, start, ZoneCondition.Empty, false);
            ZbcFormat.EncodeSlot(table.AsSpan(i * ZbcFormat.ZoneRecordBytes + ZbcFormat.SlotBytes), i, record); // sequence 1: odd slot
        }
        f.Write(table, layout.ZoneTableOffset);
        f.SyncData();
        f.Write(ZbcFormat.EncodeHeader(layout), 0);
        f.SyncAll();
    }

    /// <summary>Opens a device file, taking an exclusive lock so no other LUN or process serves it at the same time.</summary>
    public static IBackingFile OpenFile(string path, bool readOnly)
    {
        SafeFileHandle h;
        try
        {
            h = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (File.Exists(path) && e is not FileNotFoundException)
        {
            throw new HandlerConfigException($"{path} is in use by another LUN or process (or cannot be opened: {e.Message}); a zbc device is served by one LUN at a time.", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HandlerConfigException($"{path} cannot be opened: {e.Message}", e);
        }
        if (!Posix.IsRegularFile((int)h.DangerousGetHandle()))
        {
            h.Dispose();
            throw new HandlerConfigException($"{path} is not a regular file; a zbc device is emulated on a regular file.");
        }
        return new OsFile(h, path);
    }

    /// <summary>Reads the header and zone records of a formatted device; takes ownership of <paramref name="f"/>.</summary>
    public static (ZbcStore Store, ZbcFormat.ZoneRecord[] Records) Open(IBackingFile f, string path)
    {
        try
        {
            var header = new byte[ZbcFormat.HeaderBytes];
            var n = f.Read(header, 0);
            var layout = ZbcFormat.DecodeHeader(header.AsSpan(0, n), path, f.Length, out var error)
                ?? throw new HandlerConfigException(error!);
            var records = ReadRecords(f, path, layout);
            return (new ZbcStore(f, path, layout), records);
        }
        catch
        {
            f.Dispose();
            throw;
        }
    }

    private static ZbcFormat.ZoneRecord[] ReadRecords(IBackingFile f, string path, ZbcLayout layout)
    {
        var table = new byte[(long)layout.ZoneCount * ZbcFormat.ZoneRecordBytes];
        if (f.Read(table, layout.ZoneTableOffset) != table.Length)
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
            var n = await file.ReadAsync(destination, offset, ct);
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
        => file.WriteAsync(source, DataOffset(lba), ct);

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
            if (file.TryPunchHole(DataOffset(lba), blocks * Layout.LbaSize))
                return;
            punchUnsupported = true;
        }
        if (mustZeroBlocks <= 0)
            return;
        var zeros = new byte[(int)Math.Min(mustZeroBlocks * Layout.LbaSize, 1 << 20)];
        for (long done = 0, total = mustZeroBlocks * Layout.LbaSize; done < total;)
        {
            var n = (int)Math.Min(total - done, zeros.Length);
            file.Write(zeros.AsSpan(0, n), DataOffset(lba) + done);
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
            file.Write(slot, ZbcFormat.SlotOffset(Layout, zone.Index, record.Sequence));
        }
    }

    /// <summary>fdatasync: every completed write of data and records is durable.</summary>
    public void SyncData() => file.SyncData();

    /// <summary>fsync: also file metadata, such as punched holes.</summary>
    public void SyncAll() => file.SyncAll();

    public void Dispose() => file.Dispose();
}
