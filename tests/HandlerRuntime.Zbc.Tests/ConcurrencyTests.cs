using System.Collections.Concurrent;
using HandlerRuntime.Handlers.Zbc;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>
/// The device declares <see cref="ThreadModel.Parallel"/>: many commands at once, through the
/// SCSI core, on the same zones. Writers race to append to shared zones (the losers get
/// UNALIGNED WRITE and retry), while zone commands, flushes and reads run alongside.
/// </summary>
public sealed class ConcurrencyTests : IDisposable
{
    private const long ZoneBlocks = 2048;
    private readonly TempDir dir = new("zbc-concurrency");

    public void Dispose() => dir.Dispose();

    [Fact]
    public async Task Racing_writers_zone_commands_and_flushes_leave_consistent_zones()
    {
        var path = dir.File("race.zbc");
        var h = await ZbcKit.HarnessAsync($"model-HM/zsize-1/conv-1/open-4@{path}", 16 * ZoneBlocks * 512);
        Assert.Equal(ThreadModel.Parallel, h.Device.ThreadModel);
        var shared = new[] { 1, 2, 3, 4, 5, 6 };
        var landed = new ConcurrentDictionary<long, (long Lba, int Blocks)>(); // write id -> where it landed
        long ids = 0;
        using var stop = new CancellationTokenSource();

        async Task WriterAsync(int zone, int seed)
        {
            var random = new Random(seed);
            var start = zone * ZoneBlocks;
            while (true)
            {
                var z = await ZbcKit.ZoneAsync(h, start);
                if (z.Condition == ZoneCondition.Full)
                    return;
                var n = (int)Math.Min(random.Next(1, 33), start + ZoneBlocks - z.WritePointer);
                var id = Interlocked.Increment(ref ids);
                var r = await h.RunAsync(ZbcKit.Write16(z.WritePointer, n, fua: random.Next(8) == 0), ZbcKit.Pattern(z.WritePointer, n, 512, id));
                if (r.Good)
                    landed[id] = (z.WritePointer, n);
                else if (!(r.Sense == Sense.UnalignedWrite || r.Sense == Sense.WriteToFullZone || r.Sense == Sense.InsufficientZoneResources))
                    throw new Xunit.Sdk.XunitException($"write {id} to zone {zone}: unexpected {r}");
            }
        }

        async Task ZoneCommanderAsync()
        {
            var random = new Random(7);
            while (!stop.IsCancellationRequested)
            {
                var zone = shared[random.Next(shared.Length)] * ZoneBlocks;
                var action = random.Next(3) == 0 ? ZoneAction.Open : ZoneAction.Close;
                var all = random.Next(10) == 0;
                var r = await h.RunAsync(ZbcKit.ZoneOut(action, zone, all));
                if (!r.Good && r.Sense != Sense.InsufficientZoneResources)
                    throw new Xunit.Sdk.XunitException($"{action} {(all ? "all" : zone)}: unexpected {r}");
            }
        }

        async Task FlusherAsync()
        {
            while (!stop.IsCancellationRequested)
            {
                ZbcKit.AssertGood(await h.RunAsync(ZbcKit.SyncCache16));
                await Task.Delay(2);
            }
        }

        async Task ReaderAsync()
        {
            var random = new Random(11);
            while (!stop.IsCancellationRequested)
            {
                var lba = shared[random.Next(shared.Length)] * ZoneBlocks + random.Next(0, (int)ZoneBlocks - 64);
                var r = await h.RunAsync(ZbcKit.Read16(lba, 64));
                ZbcKit.AssertGood(r);
                for (var b = 0; b < 64; b++)
                    Assert.True(ZbcKit.WriteIdOf(r.DataIn.AsSpan(b * 512, 512), lba + b) >= 0, $"block {lba + b} read back neither zeros nor a write");
            }
        }

        var writers = shared.SelectMany(z => Enumerable.Range(0, 3).Select(k => Task.Run(() => WriterAsync(z, z * 10 + k)))).ToArray();
        var others = new[] { Task.Run(ZoneCommanderAsync), Task.Run(FlusherAsync), Task.Run(ReaderAsync) };
        await Task.WhenAll(writers);
        await stop.CancelAsync();
        await Task.WhenAll(others);

        // every zone is FULL, and each block holds exactly the write that landed there
        await AssertZonesHoldTheLandedWritesAsync(h, shared, landed);
        var zones = await ZbcKit.ReportAllAsync(h);
        await ZoneTransitionTests.AssertAccountingAsync(h, zones);
        await h.DisposeAsync();

        await using var reopened = await ZbcKit.HarnessAsync($"@{path}");
        await AssertZonesHoldTheLandedWritesAsync(reopened, shared, landed);
    }

    private static async Task AssertZonesHoldTheLandedWritesAsync(ScsiHarness h, int[] zones, ConcurrentDictionary<long, (long Lba, int Blocks)> landed)
    {
        var owner = new Dictionary<long, long>();
        foreach (var (id, (lba, blocks)) in landed)
            for (var b = 0; b < blocks; b++)
                Assert.True(owner.TryAdd(lba + b, id), $"two acknowledged writes landed on block {lba + b}");
        foreach (var zone in zones)
        {
            var start = zone * ZoneBlocks;
            var d = await ZbcKit.ZoneAsync(h, start);
            Assert.Equal(ZoneCondition.Full, d.Condition);
            var r = await h.RunAsync(ZbcKit.Read16(start, (int)ZoneBlocks));
            for (var b = 0; b < ZoneBlocks; b++)
                Assert.Equal(owner[start + b], ZbcKit.WriteIdOf(r.DataIn.AsSpan((int)b * 512, 512), start + b));
        }
    }

    [Fact]
    public async Task Concurrent_fua_writes_and_flushes_all_complete_without_deadlock()
    {
        var path = dir.File("group.zbc");
        await using var h = await ZbcKit.HarnessAsync($"model-HM/zsize-1/conv-0/open-8@{path}", 16 * ZoneBlocks * 512);
        var tasks = Enumerable.Range(0, 16).Select(async z =>
        {
            for (var i = 0; i < 8; i++)
                ZbcKit.AssertGood(await h.RunAsync(ZbcKit.Write16(z * ZoneBlocks + i * 4, 4, fua: true), ZbcKit.Pattern(z * ZoneBlocks + i * 4, 4, 512, z * 100 + i + 1)));
        }).Concat(Enumerable.Range(0, 8).Select(async _ => ZbcKit.AssertGood(await h.RunAsync(ZbcKit.SyncCache10)))).ToArray();
        await Task.WhenAll(tasks);
        var zones = await ZbcKit.ReportAllAsync(h);
        Assert.All(zones, z => Assert.Equal(z.Start + 32, z.WritePointer));
    }
}
