using System.Diagnostics;
using System.Globalization;
using HandlerRuntime.Handlers.Zbc;
using HandlerRuntime.Sdk;
using Xunit.Abstractions;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>
/// Crash trials: a separate process (tests/HandlerRuntime.Zbc.CrashDriver) runs FUA and
/// cached writes, flushes and zone commands on a zbc file and is killed with SIGKILL at a
/// random moment. The device is then reopened and every zone checked against the driver's
/// journal: its write pointer and data must be those after some prefix of the zone's
/// commands that includes everything acknowledged as durable (FUA, a later completed
/// SYNCHRONIZE CACHE, write cache off, RESET, FINISH) and nothing not issued; no block below
/// the pointer may hold anything but the write that put it there, and the file above the
/// pointer must be zeros.
/// </summary>
public sealed class CrashTrialTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir dir = new("zbc-crash");

    public void Dispose() => dir.Dispose();

    private static string Driver => Path.Combine(RepoPaths.Root, "tests", "HandlerRuntime.Zbc.CrashDriver", "bin", RepoPaths.Configuration, "net10.0", "HandlerRuntime.Zbc.CrashDriver");

    [Fact]
    public async Task Write_pointers_survive_kill_9_at_random_points()
    {
        Assert.True(File.Exists(Driver), $"the crash driver is not built at {Driver}; build the solution first");
        var trials = int.TryParse(Environment.GetEnvironmentVariable("HRT_ZBC_CRASH_TRIALS"), out var n) ? n : 40;
        var random = new Random(20261121);
        var totals = new TrialStats();
        for (var trial = 0; trial < trials; trial++)
        {
            var model = trial % 3 == 2 ? "HA" : "HM";
            var writeCache = trial % 4 != 3;
            var stats = await RunTrialAsync(trial, model, writeCache, random.Next(), random.Next(30, 400));
            totals.Add(stats);
        }
        output.WriteLine($"crash trials: {trials} SIGKILLs; {totals.Commands} commands journaled, {totals.InFlight} in flight at the kill; " +
                         $"{totals.DurableWrites} acknowledged-durable writes and {totals.DurableZoneCommands} resets/finishes verified; " +
                         $"{totals.LostCachedOps} cached commands legitimately lost; {totals.ZonesChecked} zones checked");
        Assert.True(totals.DurableWrites > trials, "too few durable writes were exercised to say anything");
    }

    private async Task<TrialStats> RunTrialAsync(int trial, string model, bool writeCache, int seed, int killAfterMs)
    {
        var device = dir.File($"t{trial}.zbc");
        var journal = dir.File($"t{trial}.journal");
        await (await ZbcKit.OpenAsync($"model-{model}/zsize-1/conv-1/open-4@{device}", 16L << 20)).DisposeAsync();

        var psi = new ProcessStartInfo(Driver) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { device, journal, seed.ToString(CultureInfo.InvariantCulture), writeCache ? "1" : "0" })
            psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!(File.Exists(journal) && (await ReadShared(journal)).Contains("READY", StringComparison.Ordinal)))
        {
            if (process.HasExited)
                throw new Xunit.Sdk.XunitException($"trial {trial}: the driver exited with {process.ExitCode}: {await stderr}");
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"trial {trial}: the driver did not start");
            await Task.Delay(10);
        }
        await Task.Delay(killAfterMs);
        if (process.HasExited)
            throw new Xunit.Sdk.XunitException($"trial {trial}: the driver stopped before the kill: {await stderr}");
        process.Kill(); // SIGKILL
        await process.WaitForExitAsync();

        var log = Journal.Parse(await ReadShared(journal));
        var context = $"trial {trial} ({model}, write cache {(writeCache ? "on" : "off")}, killed after {killAfterMs} ms, {log.Commands} commands)";
        var stats = new TrialStats { Commands = log.Commands, InFlight = log.InFlight };
        var pointers = new List<(long WritePointer, long End)>();
        long dataOffset;
        await using (var h = await ZbcKit.HarnessAsync($"@{device}"))
        {
            dataOffset = ((ZbcDevice)h.Device).Layout.DataOffset;
            foreach (var zone in (await ZbcKit.ReportAllAsync(h)).Where(z => z.Type != ZoneType.Conventional))
            {
                stats.Add(await CheckZoneAsync(h, zone, log, writeCache, context));
                pointers.Add((zone.WritePointer, zone.Start + zone.Length));
            }
        }
        foreach (var (wp, end) in pointers)
            await AssertZerosAboveAsync(device, dataOffset, wp, end, context);
        File.Delete(device);
        File.Delete(journal);
        return stats;
    }

    private static async Task<string> ReadShared(string path)
    {
        await using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var r = new StreamReader(f);
        return await r.ReadToEndAsync();
    }

    private static async Task<TrialStats> CheckZoneAsync(ScsiHarness h, ZoneDescriptor zone, Journal log, bool writeCache, string context)
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

    private static async Task AssertZerosAboveAsync(string device, long dataOffset, long wp, long end, string context)
    {
        if (wp >= end)
            return;
        var raw = new byte[(end - wp) * 512];
        await using (var f = new FileStream(device, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        {
            f.Position = dataOffset + wp * 512;
            await f.ReadExactlyAsync(raw);
        }
        Assert.True(!raw.AsSpan().ContainsAnyExcept((byte)0), $"{context}: the file holds data above the write pointer {wp} after recovery");
    }

    private sealed class TrialStats
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

    /// <summary>The driver's journal: each command's issue and completion, in the order they happened.</summary>
    private sealed class Journal
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
}
