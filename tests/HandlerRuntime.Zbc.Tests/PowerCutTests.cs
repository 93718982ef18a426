using HandlerRuntime.Handlers.Zbc;
using HandlerRuntime.Sdk;
using HandlerRuntime.Zbc.Testing;
using Xunit.Abstractions;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>
/// Power-cut trials, the half of crash safety that kill -9 cannot reach: the device runs on
/// a <see cref="PowerCutFile"/>, whose medium keeps only synced sectors, and the power is
/// cut just before a random file operation (inside a flush, a reset, a write...), each
/// unsynced sector then old or new at random.
/// The device reopened on that medium must satisfy what the crash trials check: every zone
/// as after a prefix of its commands holding all that was acknowledged durable, nothing but
/// written data below a pointer, zeros above. A record written before its data was synced,
/// or a reset punched before its record, fails here.
/// </summary>
public sealed class PowerCutTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Write_pointers_survive_power_cuts_at_random_points()
    {
        var trials = int.TryParse(Environment.GetEnvironmentVariable("HRT_ZBC_POWER_CUTS"), out var n) ? n : 60;
        var random = new Random(61);
        var totals = new TrialStats();
        for (var trial = 0; trial < trials; trial++)
            totals.Add(await RunTrialAsync(trial, trial % 3 == 2 ? ZoneModel.HostAware : ZoneModel.HostManaged, writeCache: trial % 4 != 3, random.Next(), random.Next(20, 3000)));
        output.WriteLine($"power cuts: {trials} trials; {totals.Commands} commands journaled, {totals.InFlight} in flight at the cut; " +
                         $"{totals.DurableWrites} acknowledged-durable writes and {totals.DurableZoneCommands} resets/finishes verified; " +
                         $"{totals.LostCachedOps} cached commands lost; {totals.ZonesChecked} zones checked");
        Assert.True(totals.DurableWrites > trials);
    }

    private static async Task<TrialStats> RunTrialAsync(int trial, ZoneModel model, bool writeCache, int seed, int cutAtOperation)
    {
        var options = new ZbcOptions("/power-cut") { Model = model, ZoneSizeMiB = 1, ConventionalZones = 1, OpenZones = 4 };
        var layout = ZbcLayout.ForNewDevice(options, 16L << 20, 0, out var error) ?? throw new InvalidOperationException(error);
        var medium = PowerCutFile.Empty();
        ZbcStore.Format(medium, layout);

        // traffic until the power fails, just before file operation number cutAtOperation
        var lines = new List<string>();
        var random = new Random(seed);
        using var stop = new CancellationTokenSource();
        var (store, records) = ZbcStore.Open(medium, "power-cut");
        var h = new ScsiHarness(ZbcDevice.Open(store, records, readOnly: false), subtype: "zbc", writeCache: writeCache);
        await h.ClearUnitAttentionAsync();
        var zones = await ZbcKit.ReportAllAsync(h);
        medium.CutAtOperation(cutAtOperation, random);
        void Line(string text)
        {
            lock (lines)
            {
                // A line is kept only if the power had not failed when it was written, so what it
                // reports (an issue, a completion) happened before the cut.
                if (medium.Image is not null || lines.Count >= 20_000)
                {
                    medium.CutNow(random);
                    stop.Cancel();
                    return;
                }
                lines.Add(text + " .");
            }
        }
        await new ZbcTraffic(h, zones, 512, Line, seed).RunAsync(stop.Token);
        // the old device's later writes went to a cache that no longer exists: it is dropped
        var image = medium.Image!;

        var log = Journal.Parse(string.Join('\n', lines) + "\n");
        var context = $"power cut {trial} ({model}, write cache {(writeCache ? "on" : "off")}, before file operation {cutAtOperation}, {log.Commands} commands)";
        var after = PowerCutFile.FromImage(image);
        (store, records) = ZbcStore.Open(after, "power-cut image");
        await using var recovered = new ScsiHarness(ZbcDevice.Open(store, records, readOnly: false), subtype: "zbc");
        await recovered.ClearUnitAttentionAsync();
        var stats = new TrialStats { Commands = log.Commands, InFlight = log.InFlight };
        foreach (var zone in (await ZbcKit.ReportAllAsync(recovered)).Where(z => z.Type != ZoneType.Conventional))
        {
            stats.Add(await CrashCheck.CheckZoneAsync(recovered, zone, log, writeCache, context));
            var above = new byte[(zone.Start + zone.Length - zone.WritePointer) * 512];
            after.Read(above, layout.DataOffset + zone.WritePointer * 512);
            Assert.True(!above.AsSpan().ContainsAnyExcept((byte)0), $"{context}: data above the write pointer of the zone at {zone.Start} after recovery");
        }
        return stats;
    }
}
