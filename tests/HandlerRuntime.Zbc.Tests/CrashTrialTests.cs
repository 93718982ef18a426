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
                stats.Add(await CrashCheck.CheckZoneAsync(h, zone, log, writeCache, context));
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
}
