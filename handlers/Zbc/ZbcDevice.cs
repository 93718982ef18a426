using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Zbc;

/// <summary>
/// An emulated zoned disk. Reads and writes enforce the write-pointer rules; zone state
/// lives in a <see cref="ZoneTable"/> under its gate, and every change that moves a write
/// pointer reaches the file's zone records in an order that keeps docs/zbc.md's two
/// durability rules: a recorded write pointer never covers data that is not durable, and
/// data acknowledged as durable is never above its recorded write pointer.
/// <para>
/// Concurrency (<see cref="ThreadModel.Parallel"/>): a write holds the write lock of each
/// write pointer zone it touches for its whole duration, so writes to one zone apply one
/// at a time; zone management takes the same locks, so it never sees a write half done.
/// Record writes and syncs go through one persist gate. Lock order: zone locks in
/// ascending zone order, then the persist gate, then the table's gate (never held across I/O).
/// </para>
/// </summary>
internal sealed class ZbcDevice : IBlockDevice, IZonedBlockDevice, IHasStatus
{
    private readonly ZbcStore store;
    private readonly ZoneTable table;
    private readonly bool readOnly;
    private readonly SemaphoreSlim persistGate = new(1, 1);
    private long persistRequested;
    private long persistCompleted;
    private int disposed;

    /// <summary>
    /// The device over an opened store, in the state its records describe. Writable devices
    /// first recover: whatever lies above a recorded write pointer is left over from writes
    /// whose pointer never became durable, or from a reset cut short, and is punched out so
    /// that no later pointer can ever cover it.
    /// </summary>
    public static ZbcDevice Open(ZbcStore store, ReadOnlySpan<ZbcFormat.ZoneRecord> records, bool readOnly)
    {
        var table = new ZoneTable(store.Layout, records);
        if (!readOnly)
        {
            for (var i = 0; i < table.Count; i++)
            {
                var zone = table[i];
                if (zone.Condition is ZoneCondition.Empty or ZoneCondition.Closed)
                    store.ZeroBlocks(zone.WritePointer, zone.End - zone.WritePointer, mustZeroBlocks: 0);
            }
            store.SyncAll();
        }
        return new ZbcDevice(store, table, readOnly);
    }

    private ZbcDevice(ZbcStore store, ZoneTable table, bool readOnly)
    {
        this.store = store;
        this.table = table;
        this.readOnly = readOnly;
        var layout = store.Layout;
        Geometry = new DeviceGeometry { LogicalBlockSize = layout.LbaSize, BlockCount = layout.CapacityBlocks };
        Capabilities = readOnly ? DeviceCapabilities.None : DeviceCapabilities.Write | DeviceCapabilities.Flush | DeviceCapabilities.Fua;
        ZonedCharacteristics = new ZonedCharacteristics
        {
            Model = layout.Model,
            UnrestrictedReads = layout.Model == ZoneModel.HostAware || layout.UnrestrictedReads,
            MaxOpenSequentialWriteRequiredZones = layout.Model == ZoneModel.HostManaged ? layout.OpenZones : 0,
            OptimalOpenSequentialWritePreferredZones = layout.Model == ZoneModel.HostAware ? layout.OpenZones : 0,
            OptimalNonSequentiallyWrittenSequentialWritePreferredZones = layout.Model == ZoneModel.HostAware ? layout.OpenZones : 0,
        };
    }

    public DeviceGeometry Geometry { get; }

    public DeviceCapabilities Capabilities { get; }

    public ThreadModel ThreadModel => ThreadModel.Parallel;

    public ZonedCharacteristics ZonedCharacteristics { get; }

    public ZbcLayout Layout => store.Layout;

    private int BlockSize => store.Layout.LbaSize;

    // ---- reads ----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var lba = offset / BlockSize;
        var blocks = destination.Length / BlockSize;
        if (blocks == 0)
            return;
        int first, count;
        long[] dataEnds;
        lock (table.Gate)
        {
            first = table.ZoneOf(lba).Index;
            count = table.ZoneOf(lba + blocks - 1).Index - first + 1;
            dataEnds = ArrayPool<long>.Shared.Rent(count);
            try
            {
                table.PlanRead(lba, blocks, dataEnds);
            }
            catch
            {
                ArrayPool<long>.Shared.Return(dataEnds);
                throw;
            }
        }
        try
        {
            // Each zone's part: what was written comes from the file, the rest reads as zeros.
            var end = lba + blocks;
            for (var i = 0; i < count; i++)
            {
                var zone = table[first + i];
                var from = Math.Max(lba, zone.Start);
                var to = Math.Min(end, zone.End);
                var dataTo = Math.Clamp(dataEnds[i], from, to);
                var part = destination.Slice((int)((from - lba) * BlockSize), (int)((to - from) * BlockSize));
                var written = (int)((dataTo - from) * BlockSize);
                if (written > 0)
                    await store.ReadAsync(from, part[..written], cancellationToken);
                part.Span[written..].Clear();
            }
        }
        finally
        {
            ArrayPool<long>.Shared.Return(dataEnds);
        }
    }

    // ---- writes ----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
    {
        var lba = offset / BlockSize;
        var blocks = source.Length / BlockSize;
        if (blocks == 0)
            return;
        var (first, last) = table.CheckWriteShape(lba, blocks);
        if (first < 0)
        {
            await store.WriteAsync(lba, source, cancellationToken); // conventional zones: no write pointer
        }
        else
        {
            var locked = await LockZonesAsync(first, last, cancellationToken);
            try
            {
                lock (table.Gate)
                    table.BeginWrite(lba, first, last);
                // Not cancellable from here: the zones are open for this write; its pointer moves only once the data is in the file.
                await store.WriteAsync(lba, source, CancellationToken.None);
                lock (table.Gate)
                    table.CompleteWrite(lba, blocks, first, last);
            }
            finally
            {
                UnlockZones(first, locked);
            }
        }
        if ((flags & WriteFlags.Fua) != 0)
            await PersistAsync(CancellationToken.None);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> LockZonesAsync(int first, int last, CancellationToken ct)
    {
        var locked = 0;
        try
        {
            for (var i = first; i <= last; i++, locked++)
                await table[i].WriteLock!.WaitAsync(ct);
        }
        catch
        {
            UnlockZones(first, locked);
            throw;
        }
        return locked;
    }

    private void UnlockZones(int first, int count)
    {
        for (var i = first + count - 1; i >= first; i--)
            table[i].WriteLock!.Release();
    }

    private async ValueTask<(int First, int Count)> LockTargetAsync(ZoneTarget target, CancellationToken ct)
    {
        var first = target.IsAll ? store.Layout.ConventionalZones : table.ZoneOf(target.ZoneStartLba).Index;
        var last = target.IsAll ? table.Count - 1 : first;
        if (table[first].IsConventional)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2));
        return (first, await LockZonesAsync(first, last, ct));
    }

    // ---- durability ----

    public ValueTask FlushAsync(CancellationToken cancellationToken) => PersistAsync(cancellationToken);

    /// <summary>
    /// Makes every write completed before the call durable together with its write pointer:
    /// first the data (fdatasync), then the zone records that point over it, then a second
    /// fdatasync. Callers that arrive while a cycle runs share the next one (group commit).
    /// </summary>
    private async ValueTask PersistAsync(CancellationToken ct)
    {
        var ticket = Interlocked.Increment(ref persistRequested);
        await persistGate.WaitAsync(ct);
        try
        {
            if (Volatile.Read(ref persistCompleted) >= ticket)
                return; // a cycle that started after this request already covered it
            var covers = Volatile.Read(ref persistRequested);
            var records = new List<(Zone Zone, ZbcFormat.ZoneRecord Record)>();
            lock (table.Gate)
                table.TakeDirty(records); // snapshot: write pointers over completed writes only
            try
            {
                store.SyncData();
                if (records.Count > 0)
                {
                    store.WriteRecords(records);
                    store.SyncData();
                }
            }
            catch
            {
                lock (table.Gate)
                    table.Failed(records);
                throw;
            }
            lock (table.Gate)
                ZoneTable.Committed(records);
            Volatile.Write(ref persistCompleted, covers);
        }
        finally
        {
            persistGate.Release();
        }
    }

    // ---- zoned ----

    public ValueTask<ZoneReport> ReportZonesAsync(long startLba, ZoneReportingOptions options, bool partial, Memory<ZoneDescriptor> destination, CancellationToken cancellationToken)
    {
        if ((ulong)startLba >= (ulong)store.Layout.CapacityBlocks)
            throw new ScsiException(Sense.LbaOutOfRange);
        lock (table.Gate)
            return ValueTask.FromResult(table.Report(startLba, options, partial, destination.Span));
    }

    public async ValueTask ManageZoneAsync(ZoneAction action, ZoneTarget target, CancellationToken cancellationToken)
    {
        if (readOnly)
            throw new ScsiException(Sense.WriteProtected);
        if (!target.IsAll && (ulong)target.ZoneStartLba >= (ulong)store.Layout.CapacityBlocks)
            throw new ScsiException(Sense.LbaOutOfRange);
        var (first, locked) = await LockTargetAsync(target, cancellationToken);
        try
        {
            switch (action)
            {
                case ZoneAction.Open:
                    lock (table.Gate)
                        table.Open(target);
                    break;
                case ZoneAction.Close:
                    lock (table.Gate)
                        table.Close(target);
                    break;
                case ZoneAction.Finish:
                    await FinishAsync(target);
                    break;
                case ZoneAction.ResetWritePointer:
                    await ResetAsync(target);
                    break;
                default:
                    throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(1, 4));
            }
        }
        finally
        {
            UnlockZones(first, locked);
        }
    }

    /// <summary>
    /// FINISH: zeros above the write pointers first (so nothing stale shows below the new
    /// pointer), fsync (the data below them and the holes are durable), then the FULL records
    /// and fdatasync. A crash before the records leaves the zones as they were.
    /// </summary>
    private async ValueTask FinishAsync(ZoneTarget target)
    {
        await persistGate.WaitAsync();
        try
        {
            List<Zone> selected;
            List<(long WritePointer, long End)> unwritten;
            lock (table.Gate)
            {
                selected = table.SelectForFinish(target);
                unwritten = selected.Select(z => (z.WritePointer, z.End)).ToList();
            }
            if (selected.Count == 0)
                return;
            foreach (var (writePointer, end) in unwritten)
                store.ZeroBlocks(writePointer, end - writePointer, mustZeroBlocks: end - writePointer);
            store.SyncAll();
            var records = new List<(Zone Zone, ZbcFormat.ZoneRecord Record)>();
            lock (table.Gate)
            {
                table.ApplyFinish(selected);
                table.TakeRecords(selected, records);
            }
            WriteRecordsDurably(records);
        }
        finally
        {
            persistGate.Release();
        }
    }

    /// <summary>
    /// RESET: the EMPTY records first and fdatasync (the reset is then durable, and no
    /// recorded pointer covers anything), then the old data is punched out. A crash between
    /// the two leaves stale data above an EMPTY pointer, which the next open punches.
    /// </summary>
    private async ValueTask ResetAsync(ZoneTarget target)
    {
        await persistGate.WaitAsync();
        try
        {
            var records = new List<(Zone Zone, ZbcFormat.ZoneRecord Record)>();
            List<(long Start, long Written, long End)> cleared;
            lock (table.Gate)
            {
                var selected = table.SelectForReset(target);
                cleared = selected.Select(z => (z.Start, z.WritePointer, z.End)).ToList();
                table.ApplyReset(selected);
                table.TakeRecords(selected, records);
            }
            if (records.Count == 0)
                return;
            WriteRecordsDurably(records);
            // Punching also gives the space back. Where the filesystem cannot punch, only a
            // host-aware zone needs zeros written: it is read below its pointer even where it
            // was not written since the reset, while a host-managed zone is read only below its
            // pointer, which starts again at the zone start.
            var mustZero = store.Layout.Model == ZoneModel.HostAware;
            foreach (var (start, written, end) in cleared)
                store.ZeroBlocks(start, end - start, mustZeroBlocks: mustZero ? written - start : 0);
        }
        finally
        {
            persistGate.Release();
        }
    }

    private void WriteRecordsDurably(List<(Zone Zone, ZbcFormat.ZoneRecord Record)> records)
    {
        try
        {
            store.WriteRecords(records);
            store.SyncData();
        }
        catch
        {
            lock (table.Gate)
                table.Failed(records);
            throw;
        }
        lock (table.Gate)
            ZoneTable.Committed(records);
    }

    /// <summary>
    /// Takes the zone starting at <paramref name="zoneStartLba"/> READ ONLY or OFFLINE, as a
    /// failing drive would, or back to EMPTY; the change is durable when this returns. Lets
    /// operators and tests see how initiators cope with failed zones.
    /// </summary>
    public async ValueTask SetZoneConditionAsync(long zoneStartLba, ZoneCondition condition, CancellationToken ct)
    {
        if (condition is not (ZoneCondition.ReadOnly or ZoneCondition.Offline or ZoneCondition.Empty))
            throw new ArgumentException("Only READ ONLY, OFFLINE and EMPTY can be set.", nameof(condition));
        if (readOnly)
            throw new ScsiException(Sense.WriteProtected);
        var zone = table.ZoneOf(zoneStartLba);
        if (zone.Start != zoneStartLba || zone.IsConventional)
            throw new ArgumentException($"LBA {zoneStartLba} is not the start of a write pointer zone.", nameof(zoneStartLba));
        await zone.WriteLock!.WaitAsync(ct);
        try
        {
            await persistGate.WaitAsync(ct);
            try
            {
                var records = new List<(Zone Zone, ZbcFormat.ZoneRecord Record)>();
                long written;
                lock (table.Gate)
                {
                    written = zone.WritePointer;
                    table.SetCondition(zone, condition);
                    table.TakeRecords([zone], records);
                }
                WriteRecordsDurably(records);
                if (condition == ZoneCondition.Empty)
                    store.ZeroBlocks(zone.Start, zone.Length, mustZeroBlocks: Math.Max(written, zone.Start) - zone.Start);
            }
            finally
            {
                persistGate.Release();
            }
        }
        finally
        {
            zone.WriteLock.Release();
        }
    }

    /// <summary>Counts of zones by condition, and the open-zone accounting, for <c>hrt status</c>.</summary>
    public JsonObject GetStatus()
    {
        lock (table.Gate)
        {
            var byCondition = new JsonObject();
            for (var i = 0; i < table.Count; i++)
            {
                var name = table[i].Condition.ToString();
                byCondition[name] = (byCondition[name]?.GetValue<int>() ?? 0) + 1;
            }
            return new JsonObject
            {
                ["model"] = store.Layout.Model == ZoneModel.HostManaged ? "host-managed" : "host-aware",
                ["zones"] = table.Count,
                ["zoneBlocks"] = store.Layout.ZoneBlocks,
                ["conditions"] = byCondition,
                ["implicitlyOpen"] = table.ImplicitlyOpenCount,
                ["explicitlyOpen"] = table.ExplicitlyOpenCount,
                ["openLimit"] = store.Layout.OpenZones,
            };
        }
    }

    /// <summary>Every zone as REPORT ZONES would describe it (for tests and tools).</summary>
    public ZoneDescriptor[] Snapshot()
    {
        lock (table.Gate)
        {
            var all = new ZoneDescriptor[table.Count];
            table.Report(0, ZoneReportingOptions.All, partial: false, all);
            return all;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0)
            return;
        try
        {
            if (!readOnly)
                await PersistAsync(CancellationToken.None); // a clean close loses nothing
        }
        finally
        {
            store.Dispose();
        }
    }
}
