using HandlerRuntime.Sdk;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>
/// Checks a device recovered from a crash or a power cut against the journal of the
/// traffic that ran on it (<see cref="HandlerRuntime.Zbc.Testing.ZbcTraffic"/>).
/// </summary>
internal static class CrashCheck
{
    /// <summary>
    /// The zone must be as it was after some prefix of its commands that includes every
    /// command acknowledged as durable: pointer, condition and every block below the pointer.
    /// </summary>
    public static async Task<TrialStats> CheckZoneAsync(ScsiHarness h, ZoneDescriptor zone, Journal log, bool writeCache, string context)
    {
        var end = zone.Start + zone.Length;
        var ops = log.ForZone(zone.Start);
        // The last command that must have happened: acknowledged and durable.
        var mustHave = -1;
        for (var i = 0; i < ops.Count; i++)
            if (ops[i].Acked && (ops[i].Kind is 'R' or 'N' || ops[i].Fua || !writeCache || log.FlushedAfter(ops[i])))
                mustHave = i;

        var read = await h.RunAsync(ZbcKit.Read16(zone.Start, (int)zone.Length), allocation: (int)zone.Length * 512);
        ZbcKit.AssertGood(read);
        var ids = new long[zone.Length];
        for (var b = 0; b < zone.Length; b++)
            ids[b] = ZbcKit.WriteIdOf(read.DataIn.AsSpan((int)b * 512, 512), zone.Start + b);

        var tried = new List<string>();
        for (var applied = mustHave + 1; applied <= ops.Count; applied++)
        {
            // the zone after the first `applied` commands
            var wp = zone.Start;
            var content = new Dictionary<long, long>();
            for (var i = 0; i < applied; i++)
            {
                var op = ops[i];
                switch (op.Kind)
                {
                    case 'W':
                        for (var b = 0; b < op.Blocks; b++)
                            content[op.Lba + b] = op.WriteId;
                        wp = op.Lba + op.Blocks;
                        break;
                    case 'R':
                        wp = zone.Start;
                        content.Clear();
                        break;
                    case 'N':
                        wp = end;
                        break;
                }
            }
            var condition = wp == zone.Start ? ZoneCondition.Empty : wp == end ? ZoneCondition.Full : ZoneCondition.Closed;
            var matches = zone.WritePointer == wp && zone.Condition == condition;
            for (var b = zone.Start; matches && b < end; b++)
                matches = ids[b - zone.Start] == (b < wp ? content.GetValueOrDefault(b) : 0);
            if (matches)
            {
                var stats = new TrialStats
                {
                    ZonesChecked = 1,
                    LostCachedOps = ops.Count(o => o.Acked) - ops.Take(applied).Count(o => o.Acked),
                };
                // durable writes whose data must still be there: those after the last durable reset
                var lastReset = ops.Take(mustHave + 1).ToList().FindLastIndex(o => o.Kind == 'R');
                stats.DurableWrites = ops.Take(mustHave + 1).Skip(lastReset + 1).Count(o => o.Kind == 'W');
                stats.DurableZoneCommands = ops.Take(mustHave + 1).Count(o => o.Kind is 'R' or 'N');
                return stats;
            }
            tried.Add($"after {applied} commands: wp {wp} {condition}");
        }
        throw new Xunit.Sdk.XunitException(
            $"{context}: zone at {zone.Start} recovered as {zone.Condition} with write pointer {zone.WritePointer}, which no allowed prefix explains " +
            $"(must include command {mustHave} of {ops.Count}; candidates: {string.Join("; ", tried)}); " +
            $"its commands: {string.Join(", ", ops)}; first blocks read: {string.Join(" ", ids.Take(64))}");
    }
}

internal sealed class TrialStats
{
    public long Commands, InFlight, DurableWrites, DurableZoneCommands, LostCachedOps, ZonesChecked;

    public void Add(TrialStats s)
    {
        Commands += s.Commands;
        InFlight += s.InFlight;
        DurableWrites += s.DurableWrites;
        DurableZoneCommands += s.DurableZoneCommands;
        LostCachedOps += s.LostCachedOps;
        ZonesChecked += s.ZonesChecked;
    }
}

/// <summary>The traffic's journal: each command's issue and completion, in the order they happened.</summary>
internal sealed class Journal
{
    public sealed record Op(long Seq, char Kind, long Zone, long Lba, int Blocks, long WriteId, bool Fua, int Issued)
    {
        public int? Completed { get; set; }
        public bool Failed { get; set; }
        public bool Acked => Completed is not null && !Failed;
        public override string ToString() => Kind == 'W' ? $"W{Seq}[{Lba}+{Blocks}{(Fua ? " fua" : "")}{(Acked ? "" : " in flight")}]" : $"{Kind}{Seq}{(Acked ? "" : " in flight")}";
    }

    private readonly Dictionary<long, Op> ops = new();
    private readonly List<Op> flushes = new();

    public int Commands => ops.Count + flushes.Count;
    public int InFlight => ops.Values.Concat(flushes).Count(o => o.Completed is null);

    public static Journal Parse(string text)
    {
        var journal = new Journal();
        var index = 0;
        foreach (var raw in text.Split('\n'))
        {
            if (!raw.EndsWith(" .", StringComparison.Ordinal))
                continue; // the line the kill cut short, if any
            var f = raw[..^2].Split(' ');
            index++;
            switch (f[0])
            {
                case "I" when f[2] == "F":
                    journal.flushes.Add(new Op(long.Parse(f[1]), 'F', -1, 0, 0, 0, false, index));
                    break;
                case "I" when f[2] == "W":
                    journal.ops[long.Parse(f[1])] = new Op(long.Parse(f[1]), 'W', long.Parse(f[3]), long.Parse(f[4]), int.Parse(f[5]), long.Parse(f[6]), f[7] == "1", index);
                    break;
                case "I":
                    journal.ops[long.Parse(f[1])] = new Op(long.Parse(f[1]), f[2][0], long.Parse(f[3]), 0, 0, 0, false, index);
                    break;
                case "A" or "E":
                    var seq = long.Parse(f[1]);
                    var op = journal.ops.GetValueOrDefault(seq) ?? journal.flushes.Single(x => x.Seq == seq);
                    op.Completed = index;
                    op.Failed = f[0] == "E";
                    break;
            }
        }
        return journal;
    }

    /// <summary>The zone's commands that may have changed its write pointer, in order: failed ones and OPEN/CLOSE left out.</summary>
    public List<Op> ForZone(long zone)
    {
        var list = ops.Values.Where(o => o.Zone == zone && (o.Kind is 'W' or 'R' or 'N') && !o.Failed).OrderBy(o => o.Seq).ToList();
        Assert.True(list.Take(Math.Max(0, list.Count - 1)).All(o => o.Acked), $"zone {zone} has a command in flight before its last one");
        return list;
    }

    /// <summary>Whether a SYNCHRONIZE CACHE issued after this command completed itself completed.</summary>
    public bool FlushedAfter(Op op) => flushes.Any(f => f.Completed is not null && !f.Failed && f.Issued > op.Completed);
}
