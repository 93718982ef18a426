using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Zbc;

/// <summary>One zone's state in memory.</summary>
internal sealed class Zone
{
    public Zone(int index, long start, long length, ZoneType type)
    {
        Index = index;
        Start = start;
        Length = length;
        Type = type;
        WriteLock = type == ZoneType.Conventional ? null : new SemaphoreSlim(1, 1);
    }

    public int Index { get; }
    public long Start { get; }
    public long Length { get; }
    public long End => Start + Length;
    public ZoneType Type { get; }
    public bool IsConventional => Type == ZoneType.Conventional;
    public bool IsOpen => Condition is ZoneCondition.ImplicitlyOpened or ZoneCondition.ExplicitlyOpened;
    public bool IsInaccessible => Condition is ZoneCondition.ReadOnly or ZoneCondition.Offline;

    public ZoneCondition Condition { get; set; }
    public long WritePointer { get; set; }
    public bool NonSequential { get; set; }

    /// <summary>Held by a write for its whole duration, and by zone management, so they apply to a zone one at a time.</summary>
    public SemaphoreSlim? WriteLock { get; }

    /// <summary>Sequence number of the last record written for this zone (selects the next slot).</summary>
    public ulong Sequence { get; set; }

    /// <summary>The write pointer or attributes changed since the last record was written.</summary>
    public bool Dirty { get; set; }

    /// <summary>The condition after a power cycle: open zones come back CLOSED, or EMPTY when nothing was written.</summary>
    public ZoneCondition RestingCondition => Condition switch
    {
        ZoneCondition.NotWritePointer or ZoneCondition.ReadOnly or ZoneCondition.Offline => Condition,
        _ => WritePointer == Start ? ZoneCondition.Empty : WritePointer >= End ? ZoneCondition.Full : ZoneCondition.Closed,
    };

    public ZbcFormat.ZoneRecord ToRecord(ulong sequence) => new(sequence, WritePointer, RestingCondition, NonSequential);

    public ZoneDescriptor Describe() => new(Start, Length, Type, Condition,
        IsConventional ? -1 : WritePointer, NonSequential, ResetRecommended: false);

    public override string ToString() => $"zone {Index} [{Start}, {End}) {Condition} wp {WritePointer}";
}

/// <summary>
/// The zone state machine and open-zone accounting of docs/zbc.md, with no I/O. Every
/// member must be called with <see cref="Gate"/> held; the device does the I/O around it.
/// </summary>
internal sealed class ZoneTable
{
    private readonly Zone[] zones;
    private readonly SortedSet<int> implicitlyOpen = new();
    private readonly List<Zone> dirty = new();
    private readonly int zoneShift;
    private int explicitlyOpen;

    /// <summary>Builds the zones of <paramref name="layout"/> in the state their records describe (open zones come back closed).</summary>
    public ZoneTable(ZbcLayout layout, ReadOnlySpan<ZbcFormat.ZoneRecord> records)
    {
        Layout = layout;
        zoneShift = System.Numerics.BitOperations.Log2((ulong)layout.ZoneBlocks);
        zones = new Zone[layout.ZoneCount];
        var sequentialType = layout.Model == ZoneModel.HostManaged ? ZoneType.SequentialWriteRequired : ZoneType.SequentialWritePreferred;
        for (var i = 0; i < zones.Length; i++)
        {
            var start = (long)i * layout.ZoneBlocks;
            var length = Math.Min(layout.ZoneBlocks, layout.CapacityBlocks - start);
            var zone = new Zone(i, start, length, i < layout.ConventionalZones ? ZoneType.Conventional : sequentialType);
            var record = records[i];
            zone.Sequence = record.Sequence;
            zone.NonSequential = record.NonSequential && !zone.IsConventional;
            zone.WritePointer = zone.IsConventional ? zone.End : record.WritePointer;
            zone.Condition = zone.IsConventional ? ZoneCondition.NotWritePointer
                : record.Condition is ZoneCondition.ReadOnly or ZoneCondition.Offline ? record.Condition
                : ZoneCondition.Empty;
            if (zone.Condition == ZoneCondition.Empty)
                zone.Condition = zone.RestingCondition;
            zones[i] = zone;
        }
    }

    public object Gate => this;

    public ZbcLayout Layout { get; }

    /// <summary>The host-managed open-zone limit; 0 for host-aware devices, whose count is only a hint.</summary>
    public int MaxOpen => Layout.Model == ZoneModel.HostManaged ? Layout.OpenZones : 0;

    public int Count => zones.Length;

    public Zone this[int index] => zones[index];

    public int ImplicitlyOpenCount => implicitlyOpen.Count;

    public int ExplicitlyOpenCount => explicitlyOpen;

    public Zone ZoneOf(long lba) => zones[(int)(lba >> zoneShift)];

    // ---- writes ----

    /// <summary>
    /// The checks that depend only on the zone layout: a write may not run from a
    /// conventional zone into a write pointer zone, nor cross the end of a
    /// sequential-write-required zone. Returns the write pointer zones touched, or (-1, -1)
    /// for a write to conventional zones only. Needs no lock: the layout never changes.
    /// </summary>
    public (int First, int Last) CheckWriteShape(long lba, long blocks)
    {
        var first = ZoneOf(lba);
        var last = ZoneOf(lba + blocks - 1);
        if (first.IsConventional)
            return last.IsConventional ? (-1, -1) : throw new ScsiException(Sense.WriteBoundaryViolation);
        if (first.Type == ZoneType.SequentialWriteRequired && last != first)
            throw new ScsiException(Sense.WriteBoundaryViolation);
        return (first.Index, last.Index);
    }

    /// <summary>Checks a write against the zones' conditions and write pointers and opens them implicitly.</summary>
    public void BeginWrite(long lba, int first, int last)
    {
        for (var i = first; i <= last; i++)
            ThrowIfInaccessible(zones[i]);
        var zone = zones[first];
        if (zone.Type == ZoneType.SequentialWriteRequired)
        {
            if (zone.Condition == ZoneCondition.Full)
                throw new ScsiException(Sense.WriteToFullZone);
            if (lba != zone.WritePointer)
                throw new ScsiException(Sense.UnalignedWrite);
        }
        for (var i = first; i <= last; i++)
            if (zones[i].Condition is ZoneCondition.Empty or ZoneCondition.Closed)
                OpenImplicitly(zones[i]);
    }

    /// <summary>Advances the write pointers over a completed write.</summary>
    public void CompleteWrite(long lba, long blocks, int first, int last)
    {
        var end = lba + blocks;
        for (var i = first; i <= last; i++)
        {
            var zone = zones[i];
            var from = Math.Max(lba, zone.Start);
            var to = Math.Min(end, zone.End);
            if (from != zone.WritePointer)
                zone.NonSequential = true; // only possible in sequential-write-preferred zones
            zone.WritePointer = Math.Max(zone.WritePointer, to);
            if (zone.WritePointer >= zone.End)
            {
                ForgetOpen(zone);
                zone.Condition = ZoneCondition.Full;
            }
            else if (!zone.IsOpen)
            {
                // Closed by an implicit open elsewhere while this write was in flight.
                zone.Condition = zone.RestingCondition;
            }
            MarkDirty(zone);
        }
    }

    private void OpenImplicitly(Zone zone)
    {
        if (MaxOpen > 0)
        {
            if (explicitlyOpen >= MaxOpen)
                throw new ScsiException(Sense.InsufficientZoneResources);
            if (implicitlyOpen.Count + explicitlyOpen >= MaxOpen)
                CloseLowestImplicitlyOpen();
        }
        zone.Condition = ZoneCondition.ImplicitlyOpened;
        implicitlyOpen.Add(zone.Index);
    }

    private void CloseLowestImplicitlyOpen() => Close(zones[implicitlyOpen.Min]);

    // ---- reads ----

    /// <summary>
    /// Checks a read and fills, for each zone it touches (from <c>ZoneOf(lba)</c>), the LBA
    /// where written data ends in that zone: the rest of the range reads as zeros.
    /// </summary>
    public void PlanRead(long lba, long blocks, Span<long> dataEnds)
    {
        var first = ZoneOf(lba).Index;
        var last = ZoneOf(lba + blocks - 1).Index;
        for (var i = first; i <= last; i++)
            if (zones[i].Condition == ZoneCondition.Offline)
                throw new ScsiException(Sense.ZoneIsOffline);
        if (Layout.Model == ZoneModel.HostManaged && !Layout.UnrestrictedReads)
        {
            var touchesSequential = false;
            for (var i = first; i <= last; i++)
                touchesSequential |= zones[i].Type == ZoneType.SequentialWriteRequired;
            if (first != last && touchesSequential)
                throw new ScsiException(Sense.ReadBoundaryViolation);
            var zone = zones[first];
            if (zone.Type == ZoneType.SequentialWriteRequired && zone.Condition is not (ZoneCondition.Full or ZoneCondition.ReadOnly)
                && lba + blocks > zone.WritePointer)
                throw new ScsiException(Sense.AttemptToReadInvalidData);
        }
        for (var i = first; i <= last; i++)
            dataEnds[i - first] = zones[i].IsConventional ? zones[i].End : Math.Min(zones[i].WritePointer, zones[i].End);
    }

    // ---- report ----

    public ZoneReport Report(long startLba, ZoneReportingOptions options, bool partial, Span<ZoneDescriptor> destination)
    {
        var written = 0;
        long matching = 0;
        for (var i = ZoneOf(startLba).Index; i < zones.Length; i++)
        {
            var zone = zones[i];
            if (!Matches(zone, options))
                continue;
            if (written < destination.Length)
                destination[written++] = zone.Describe();
            else if (partial)
                break;
            matching++;
        }
        return new ZoneReport(written, matching);
    }

    private static bool Matches(Zone zone, ZoneReportingOptions options) => options switch
    {
        ZoneReportingOptions.All => true,
        ZoneReportingOptions.Empty => zone.Condition == ZoneCondition.Empty,
        ZoneReportingOptions.ImplicitlyOpened => zone.Condition == ZoneCondition.ImplicitlyOpened,
        ZoneReportingOptions.ExplicitlyOpened => zone.Condition == ZoneCondition.ExplicitlyOpened,
        ZoneReportingOptions.Closed => zone.Condition == ZoneCondition.Closed,
        ZoneReportingOptions.Full => zone.Condition == ZoneCondition.Full,
        ZoneReportingOptions.ReadOnly => zone.Condition == ZoneCondition.ReadOnly,
        ZoneReportingOptions.Offline => zone.Condition == ZoneCondition.Offline,
        ZoneReportingOptions.ResetRecommended => false, // this device never recommends a reset
        ZoneReportingOptions.NonSequential => zone.NonSequential,
        ZoneReportingOptions.NotWritePointer => zone.Condition == ZoneCondition.NotWritePointer,
        _ => false,
    };

    // ---- zone management ----

    /// <summary>OPEN ZONE: EMPTY, IMPLICITLY OPENED or CLOSED to EXPLICITLY OPENED; with ALL, the CLOSED zones.</summary>
    public void Open(ZoneTarget target)
    {
        if (target.IsAll)
        {
            var closed = zones.Where(z => z.Condition == ZoneCondition.Closed).ToList();
            if (MaxOpen > 0 && explicitlyOpen + closed.Count > MaxOpen)
                throw new ScsiException(Sense.InsufficientZoneResources);
            foreach (var zone in closed)
                OpenExplicitly(zone);
            return;
        }
        var one = Single(target);
        if (one.Condition is ZoneCondition.ExplicitlyOpened or ZoneCondition.Full)
            return;
        if (MaxOpen > 0 && explicitlyOpen >= MaxOpen)
            throw new ScsiException(Sense.InsufficientZoneResources);
        OpenExplicitly(one);
    }

    private void OpenExplicitly(Zone zone)
    {
        if (zone.Condition == ZoneCondition.ImplicitlyOpened)
            implicitlyOpen.Remove(zone.Index); // already counted: no room needed
        else if (MaxOpen > 0 && implicitlyOpen.Count + explicitlyOpen >= MaxOpen)
            CloseLowestImplicitlyOpen();
        zone.Condition = ZoneCondition.ExplicitlyOpened;
        explicitlyOpen++;
    }

    /// <summary>CLOSE ZONE: an open zone to CLOSED, or EMPTY at its start; with ALL, every open zone.</summary>
    public void Close(ZoneTarget target)
    {
        if (target.IsAll)
        {
            foreach (var zone in zones)
                if (zone.IsOpen)
                    Close(zone);
            return;
        }
        var one = Single(target);
        if (one.IsOpen)
            Close(one);
    }

    private void Close(Zone zone)
    {
        ForgetOpen(zone);
        zone.Condition = zone.RestingCondition;
    }

    private void ForgetOpen(Zone zone)
    {
        if (zone.Condition == ZoneCondition.ImplicitlyOpened)
            implicitlyOpen.Remove(zone.Index);
        else if (zone.Condition == ZoneCondition.ExplicitlyOpened)
            explicitlyOpen--;
    }

    /// <summary>The zones FINISH ZONE will change: EMPTY, open or CLOSED; with ALL, the open and CLOSED ones.</summary>
    public List<Zone> SelectForFinish(ZoneTarget target)
    {
        if (!target.IsAll)
        {
            var one = Single(target);
            return one.Condition == ZoneCondition.Full ? [] : [one];
        }
        return zones.Where(z => z.IsOpen || z.Condition == ZoneCondition.Closed).ToList();
    }

    /// <summary>FINISH ZONE on zones chosen by <see cref="SelectForFinish"/>: write pointer to the end, FULL.</summary>
    public void ApplyFinish(List<Zone> selected)
    {
        foreach (var zone in selected)
        {
            if (zone.IsConventional || zone.IsInaccessible || zone.Condition == ZoneCondition.Full)
                continue;
            ForgetOpen(zone);
            zone.WritePointer = zone.End;
            zone.Condition = ZoneCondition.Full;
            zone.NonSequential = false;
            MarkDirty(zone);
        }
    }

    /// <summary>The zones RESET WRITE POINTER will change: any write pointer zone not already a clean EMPTY (with ALL, not READ ONLY or OFFLINE).</summary>
    public List<Zone> SelectForReset(ZoneTarget target)
    {
        static bool Changes(Zone z) => z.WritePointer != z.Start || z.Condition != ZoneCondition.Empty || z.NonSequential;
        if (!target.IsAll)
        {
            var one = Single(target);
            return Changes(one) ? [one] : [];
        }
        return zones.Where(z => !z.IsConventional && !z.IsInaccessible && Changes(z)).ToList();
    }

    /// <summary>RESET WRITE POINTER on zones chosen by <see cref="SelectForReset"/>: EMPTY, write pointer at the start, attributes cleared.</summary>
    public void ApplyReset(List<Zone> selected)
    {
        foreach (var zone in selected)
        {
            ForgetOpen(zone);
            zone.WritePointer = zone.Start;
            zone.Condition = ZoneCondition.Empty;
            zone.NonSequential = false;
            MarkDirty(zone);
        }
    }

    /// <summary>Takes a zone READ ONLY or OFFLINE (a failed zone), or back to EMPTY.</summary>
    public void SetCondition(Zone zone, ZoneCondition condition)
    {
        ForgetOpen(zone);
        zone.Condition = condition;
        if (condition == ZoneCondition.Empty)
        {
            zone.WritePointer = zone.Start;
            zone.NonSequential = false;
        }
        MarkDirty(zone);
    }

    private Zone Single(ZoneTarget target)
    {
        var zone = ZoneOf(target.ZoneStartLba);
        if (zone.Start != target.ZoneStartLba || zone.IsConventional)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2));
        ThrowIfInaccessible(zone);
        return zone;
    }

    private static void ThrowIfInaccessible(Zone zone)
    {
        if (zone.Condition == ZoneCondition.Offline)
            throw new ScsiException(Sense.ZoneIsOffline);
        if (zone.Condition == ZoneCondition.ReadOnly)
            throw new ScsiException(Sense.ZoneIsReadOnly);
    }

    // ---- persistence bookkeeping ----

    private void MarkDirty(Zone zone)
    {
        if (zone.Dirty)
            return;
        zone.Dirty = true;
        dirty.Add(zone);
    }

    /// <summary>The zones whose records are out of date, each with the record to write; clears their dirty mark.</summary>
    public void TakeDirty(List<(Zone Zone, ZbcFormat.ZoneRecord Record)> into)
    {
        foreach (var zone in dirty)
        {
            zone.Dirty = false;
            into.Add((zone, zone.ToRecord(zone.Sequence + 1)));
        }
        dirty.Clear();
    }

    /// <summary>Takes the given zones' records out of the dirty set (they are being written now) and returns them.</summary>
    public void TakeRecords(List<Zone> zonesToWrite, List<(Zone Zone, ZbcFormat.ZoneRecord Record)> into)
    {
        foreach (var zone in zonesToWrite)
        {
            if (zone.Dirty)
            {
                zone.Dirty = false;
                dirty.Remove(zone);
            }
            into.Add((zone, zone.ToRecord(zone.Sequence + 1)));
        }
    }

    /// <summary>Records were written: the zones' next records go to the other slots.</summary>
    public static void Committed(List<(Zone Zone, ZbcFormat.ZoneRecord Record)> written)
    {
        foreach (var (zone, record) in written)
            zone.Sequence = Math.Max(zone.Sequence, record.Sequence);
    }

    /// <summary>Writing records failed: mark the zones dirty so the next flush tries again.</summary>
    public void Failed(List<(Zone Zone, ZbcFormat.ZoneRecord Record)> notWritten)
    {
        foreach (var (zone, _) in notWritten)
            MarkDirty(zone);
    }

    /// <summary>Checks the accounting against the conditions (for tests and status).</summary>
    public (int Implicit, int Explicit) CountOpen()
        => (zones.Count(z => z.Condition == ZoneCondition.ImplicitlyOpened), zones.Count(z => z.Condition == ZoneCondition.ExplicitlyOpened));
}
