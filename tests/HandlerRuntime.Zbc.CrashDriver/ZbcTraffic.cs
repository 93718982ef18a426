using System.Buffers.Binary;
using HandlerRuntime.Sdk;
using HandlerRuntime.TestSupport;

namespace HandlerRuntime.Zbc.Testing;

/// <summary>
/// Random traffic for crash and power-cut trials, through the SCSI core: one worker per
/// group of sequential zones (so each zone sees one command at a time) doing writes at the
/// pointer (some FUA), RESET, FINISH, OPEN and CLOSE, and a flusher doing SYNCHRONIZE
/// CACHE. Every command is journaled before it is issued ("I seq ...") and when it
/// completes ("A seq" or "E seq key asc ascq"). Shared by the crash driver and the tests
/// (linked source).
/// </summary>
internal sealed class ZbcTraffic(ScsiHarness harness, ZoneDescriptor[] zones, int blockSize, Action<string> journal, int seed)
{
    public const int Workers = 4;
    private long nextSeq;
    private long nextWriteId;

    public Task RunAsync(CancellationToken stop)
    {
        var sequential = zones.Where(z => z.Type != ZoneType.Conventional).ToArray();
        var tasks = new List<Task>();
        for (var w = 0; w < Workers; w++)
        {
            var mine = sequential.Where((_, i) => i % Workers == w).ToArray();
            var random = new Random(seed * 31 + w);
            if (mine.Length > 0)
                tasks.Add(Task.Run(() => WorkerAsync(mine, random, stop)));
        }
        tasks.Add(Task.Run(() => FlusherAsync(stop)));
        return Task.WhenAll(tasks);
    }

    private async Task WorkerAsync(ZoneDescriptor[] mine, Random random, CancellationToken stop)
    {
        var pointers = mine.ToDictionary(z => z.Start, z => z.Condition == ZoneCondition.Full ? z.Start + z.Length : z.WritePointer);
        while (!stop.IsCancellationRequested)
        {
            var zone = mine[random.Next(mine.Length)];
            var wp = pointers[zone.Start];
            var end = zone.Start + zone.Length;
            var roll = random.Next(100);
            if (roll < 70 && wp < end)
            {
                var n = (int)Math.Min(random.Next(1, 65), end - wp);
                var fua = random.Next(100) < 30;
                var id = Interlocked.Increment(ref nextWriteId);
                if (await RunAsync(Write16(wp, n, fua), BlockPattern.Blocks(wp, n, blockSize, id), $"W {zone.Start} {wp} {n} {id} {(fua ? 1 : 0)}"))
                    pointers[zone.Start] = wp + n;
            }
            else if (roll < 80 || wp >= end)
            {
                if (await RunAsync(ZoneOut(ZoneAction.ResetWritePointer, zone.Start), null, $"R {zone.Start}"))
                    pointers[zone.Start] = zone.Start;
            }
            else if (roll < 85)
            {
                if (await RunAsync(ZoneOut(ZoneAction.Finish, zone.Start), null, $"N {zone.Start}"))
                    pointers[zone.Start] = end;
            }
            else if (roll < 92)
            {
                await RunAsync(ZoneOut(ZoneAction.Open, zone.Start), null, $"O {zone.Start}");
            }
            else
            {
                await RunAsync(ZoneOut(ZoneAction.Close, zone.Start), null, $"C {zone.Start}");
            }
        }
    }

    private async Task FlusherAsync(CancellationToken stop)
    {
        var random = new Random(seed);
        while (!stop.IsCancellationRequested)
        {
            await Task.Delay(random.Next(1, 15));
            await RunAsync([0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], null, "F");
        }
    }

    private async Task<bool> RunAsync(byte[] cdb, byte[]? data, string what)
    {
        var seq = Interlocked.Increment(ref nextSeq);
        journal($"I {seq} {what}");
        var result = await harness.RunAsync(cdb, data);
        journal(result.Good ? $"A {seq}" : $"E {seq} {(byte)result.Sense.Key} {result.Sense.Asc} {result.Sense.Ascq}");
        return result.Good;
    }

    private static byte[] Write16(long lba, int blocks, bool fua) => Cdbs.Write16((ulong)lba, (uint)blocks, fua ? Cdbs.Fua : (byte)0);

    private static byte[] ZoneOut(ZoneAction action, long zone) => Cdbs.ZoneOut((byte)action, (ulong)zone);
}
