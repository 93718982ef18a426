using HandlerRuntime.Sdk;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>
/// The reference model for the property test: conditions, write pointers, open-zone
/// accounting and block contents of docs/zbc.md, written as plainly as possible, with no
/// I/O and no concurrency. Blocks hold the id of the write that put them there (0: zeros).
/// </summary>
internal sealed class ReferenceZones
{
    public sealed class Zone(long start, long length, ZoneType type)
    {
        public long Start { get; } = start;
        public long Length { get; } = length;
        public long End => Start + Length;
        public ZoneType Type { get; } = type;
        public ZoneCondition Condition { get; set; } = type == ZoneType.Conventional ? ZoneCondition.NotWritePointer : ZoneCondition.Empty;
        public long Wp { get; set; } = type == ZoneType.Conventional ? start + length : start;
        public bool NonSeq { get; set; }
        public bool Open => Condition is ZoneCondition.ImplicitlyOpened or ZoneCondition.ExplicitlyOpened;
        public bool Conventional => Type == ZoneType.Conventional;
    }

    private readonly Zone[] zones;
    private readonly long[] content;
    private readonly bool hostManaged;
    private readonly bool unrestricted;
    private readonly int maxOpen;

    public ReferenceZones(ZoneModel model, long capacity, long zoneBlocks, int conventional, int open, bool unrestrictedReads)
    {
        hostManaged = model == ZoneModel.HostManaged;
        unrestricted = !hostManaged || unrestrictedReads;
        maxOpen = hostManaged ? open : 0;
        Capacity = capacity;
        ZoneBlocks = zoneBlocks;
        var n = (int)((capacity + zoneBlocks - 1) / zoneBlocks);
        zones = new Zone[n];
        for (var i = 0; i < n; i++)
            zones[i] = new Zone(i * zoneBlocks, Math.Min(zoneBlocks, capacity - i * zoneBlocks),
                i < conventional ? ZoneType.Conventional : hostManaged ? ZoneType.SequentialWriteRequired : ZoneType.SequentialWritePreferred);
        content = new long[capacity];
    }

    public long Capacity { get; }
    public long ZoneBlocks { get; }
    public IReadOnlyList<Zone> Zones => zones;
    public int Implicit => zones.Count(z => z.Condition == ZoneCondition.ImplicitlyOpened);
    public int Explicit => zones.Count(z => z.Condition == ZoneCondition.ExplicitlyOpened);

    private Zone At(long lba) => zones[lba / ZoneBlocks];

    private IEnumerable<Zone> Span(long lba, long n) => zones.Skip((int)(lba / ZoneBlocks)).Take((int)((lba + n - 1) / ZoneBlocks - lba / ZoneBlocks + 1));

    public SenseData? Write(long lba, int n, long id)
    {
        if (lba >= Capacity || n > Capacity - lba)
            return Sense.LbaOutOfRange;
        var touched = Span(lba, n).ToList();
        if (touched[0].Conventional)
        {
            if (!touched[^1].Conventional)
                return Sense.WriteBoundaryViolation;
        }
        else
        {
            if (hostManaged && touched.Count > 1)
                return Sense.WriteBoundaryViolation;
            foreach (var z in touched)
            {
                if (z.Condition == ZoneCondition.Offline) return Sense.ZoneIsOffline;
                if (z.Condition == ZoneCondition.ReadOnly) return Sense.ZoneIsReadOnly;
            }
            if (hostManaged)
            {
                if (touched[0].Condition == ZoneCondition.Full) return Sense.WriteToFullZone;
                if (lba != touched[0].Wp) return Sense.UnalignedWrite;
            }
            foreach (var z in touched)
            {
                if (z.Condition is not (ZoneCondition.Empty or ZoneCondition.Closed))
                    continue;
                if (maxOpen > 0)
                {
                    if (Explicit >= maxOpen) return Sense.InsufficientZoneResources;
                    if (Implicit + Explicit >= maxOpen)
                        Close(zones.First(x => x.Condition == ZoneCondition.ImplicitlyOpened));
                }
                z.Condition = ZoneCondition.ImplicitlyOpened;
            }
        }
        for (var b = lba; b < lba + n; b++)
            content[b] = id;
        foreach (var z in touched.Where(z => !z.Conventional))
        {
            var from = Math.Max(lba, z.Start);
            var to = Math.Min(lba + n, z.End);
            if (from != z.Wp) z.NonSeq = true;
            z.Wp = Math.Max(z.Wp, to);
            if (z.Wp == z.End) z.Condition = ZoneCondition.Full;
        }
        return null;
    }

    public SenseData? Read(long lba, int n, out long[] ids)
    {
        ids = [];
        if (lba >= Capacity || n > Capacity - lba)
            return Sense.LbaOutOfRange;
        var touched = Span(lba, n).ToList();
        if (touched.Any(z => z.Condition == ZoneCondition.Offline))
            return Sense.ZoneIsOffline;
        if (!unrestricted)
        {
            if (touched.Count > 1 && touched.Any(z => z.Type == ZoneType.SequentialWriteRequired))
                return Sense.ReadBoundaryViolation;
            var z = touched[0];
            if (z.Type == ZoneType.SequentialWriteRequired && z.Condition is not (ZoneCondition.Full or ZoneCondition.ReadOnly) && lba + n > z.Wp)
                return Sense.AttemptToReadInvalidData;
        }
        ids = new long[n];
        for (var i = 0; i < n; i++)
        {
            var z = At(lba + i);
            ids[i] = z.Conventional || lba + i < z.Wp ? content[lba + i] : 0;
        }
        return null;
    }

    public SenseData? Manage(ZoneAction action, long zoneId, bool all)
    {
        Zone? one = null;
        if (!all)
        {
            if (zoneId >= Capacity)
                return Sense.LbaOutOfRange;
            one = At(zoneId);
            if (one.Start != zoneId || one.Conventional)
                return Sense.InvalidFieldInCdb;
            if (one.Condition == ZoneCondition.Offline) return Sense.ZoneIsOffline;
            if (one.Condition == ZoneCondition.ReadOnly) return Sense.ZoneIsReadOnly;
        }
        switch (action)
        {
            case ZoneAction.Open when all:
                var closed = zones.Where(z => z.Condition == ZoneCondition.Closed).ToList();
                if (maxOpen > 0 && Explicit + closed.Count > maxOpen)
                    return Sense.InsufficientZoneResources;
                foreach (var z in closed)
                    OpenExplicitly(z);
                break;
            case ZoneAction.Open:
                if (one!.Condition is ZoneCondition.ExplicitlyOpened or ZoneCondition.Full)
                    break;
                if (maxOpen > 0 && Explicit >= maxOpen)
                    return Sense.InsufficientZoneResources;
                OpenExplicitly(one);
                break;
            case ZoneAction.Close:
                foreach (var z in all ? zones : [one!])
                    if (z.Open)
                        Close(z);
                break;
            case ZoneAction.Finish:
                foreach (var z in all ? zones.Where(z => z.Open || z.Condition == ZoneCondition.Closed) : [one!])
                {
                    if (z.Condition == ZoneCondition.Full)
                        continue;
                    z.Condition = ZoneCondition.Full;
                    z.Wp = z.End;
                    z.NonSeq = false;
                }
                break;
            case ZoneAction.ResetWritePointer:
                foreach (var z in all ? zones.Where(z => !z.Conventional && z.Condition is not (ZoneCondition.ReadOnly or ZoneCondition.Offline)) : [one!])
                    Reset(z);
                break;
        }
        return null;
    }

    private void OpenExplicitly(Zone z)
    {
        if (z.Condition != ZoneCondition.ImplicitlyOpened && maxOpen > 0 && Implicit + Explicit >= maxOpen)
            Close(zones.First(x => x.Condition == ZoneCondition.ImplicitlyOpened));
        z.Condition = ZoneCondition.ExplicitlyOpened;
    }

    private static void Close(Zone z) => z.Condition = z.Wp == z.Start ? ZoneCondition.Empty : ZoneCondition.Closed;

    private void Reset(Zone z)
    {
        z.Condition = ZoneCondition.Empty;
        z.Wp = z.Start;
        z.NonSeq = false;
        Array.Clear(content, (int)z.Start, (int)z.Length);
    }

    /// <summary>A zone fails (READ ONLY, OFFLINE) or is returned to service (EMPTY).</summary>
    public void SetCondition(int index, ZoneCondition condition)
    {
        var z = zones[index];
        if (condition == ZoneCondition.Empty)
            Reset(z);
        else
            z.Condition = condition;
    }

    /// <summary>A clean close and open: nothing is open any more.</summary>
    public void Reopen()
    {
        foreach (var z in zones.Where(z => z.Open))
            Close(z);
    }

    public ZoneDescriptor[] Describe() => zones.Select(z => new ZoneDescriptor(z.Start, z.Length, z.Type, z.Condition, z.Conventional ? -1 : z.Wp, z.NonSeq)).ToArray();
}
