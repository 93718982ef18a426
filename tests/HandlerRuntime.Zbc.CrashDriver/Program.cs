using System.Globalization;
using HandlerRuntime.Handlers.Zbc;
using HandlerRuntime.Sdk;
using HandlerRuntime.TestSupport;
using HandlerRuntime.Zbc.Testing;
using Microsoft.Extensions.Logging.Abstractions;

// Crash-trial victim. Opens an existing zbc device file through the SCSI core and runs
// random traffic until killed: writes (some FUA) by one worker per group of zones, zone
// commands, and SYNCHRONIZE CACHE from a flusher. Every command is journaled before it is
// issued ("I seq ...") and when it completes ("A seq" or "E seq key asc ascq"), one line
// per write(2) to the journal file, each line ending in " ." so a cut line is recognisable.
//
// usage: HandlerRuntime.Zbc.CrashDriver <device file> <journal file> <seed> <write cache 1|0>

if (args.Length != 4)
{
    Console.Error.WriteLine("usage: HandlerRuntime.Zbc.CrashDriver <device file> <journal file> <seed> <write cache 1|0>");
    return 2;
}
var devicePath = args[0];
var seed = int.Parse(args[2], CultureInfo.InvariantCulture);
var writeCache = args[3] == "1";

var context = new DeviceOpenContext
{
    LunName = "crash",
    Config = "@" + devicePath,
    Logger = NullLogger.Instance,
    StateDirectory = Path.GetTempPath(),
    Events = new IgnoredEvents(),
    NestedDevices = new NoNesting(),
};
var device = await new ZbcHandler().OpenAsync(context, CancellationToken.None);
var zoned = (IZonedBlockDevice)device;
await using var harness = new ScsiHarness(device, subtype: "zbc", writeCache: writeCache);
await harness.ClearUnitAttentionAsync();

var all = new ZoneDescriptor[4096];
var count = (await zoned.ReportZonesAsync(0, ZoneReportingOptions.All, false, all, CancellationToken.None)).Written;
var zones = all[..count];
var sequential = zones.Where(z => z.Type != ZoneType.Conventional).ToArray();
var blockSize = device.Geometry.LogicalBlockSize;

using var journal = new Journal(args[1]);
long nextSeq = 0, nextWriteId = 0;
journal.Line($"READY {zones[0].Length} {zones.Length - sequential.Length} {zones.Length}");

const int Workers = 4;
var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
var tasks = new List<Task>();
for (var w = 0; w < Workers; w++)
{
    var mine = sequential.Where((_, i) => i % Workers == w).ToArray();
    var random = new Random(seed * 31 + w);
    tasks.Add(Task.Run(() => WorkerAsync(mine, random)));
}
tasks.Add(Task.Run(FlusherAsync));
await Task.WhenAll(tasks);
return 0;

async Task WorkerAsync(ZoneDescriptor[] mine, Random random)
{
    var pointers = mine.ToDictionary(z => z.Start, z => z.WritePointer);
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
            var ok = await RunAsync(Cdbs.Write16(wp, n, fua), BlockPattern.Blocks(wp, n, blockSize, id),
                $"W {zone.Start} {wp} {n} {id} {(fua ? 1 : 0)}");
            if (ok)
                pointers[zone.Start] = wp + n;
        }
        else if (roll < 80 || wp >= end)
        {
            if (await RunAsync(Cdbs.ZoneOut(ZoneAction.ResetWritePointer, zone.Start), null, $"R {zone.Start}"))
                pointers[zone.Start] = zone.Start;
        }
        else if (roll < 85)
        {
            if (await RunAsync(Cdbs.ZoneOut(ZoneAction.Finish, zone.Start), null, $"N {zone.Start}"))
                pointers[zone.Start] = end;
        }
        else if (roll < 92)
        {
            await RunAsync(Cdbs.ZoneOut(ZoneAction.Open, zone.Start), null, $"O {zone.Start}");
        }
        else
        {
            await RunAsync(Cdbs.ZoneOut(ZoneAction.Close, zone.Start), null, $"C {zone.Start}");
        }
    }
}

async Task FlusherAsync()
{
    var random = new Random(seed);
    while (!stop.IsCancellationRequested)
    {
        await Task.Delay(random.Next(1, 15));
        await RunAsync(Cdbs.SyncCache16, null, "F");
    }
}

async Task<bool> RunAsync(byte[] cdb, byte[]? data, string what)
{
    var seq = Interlocked.Increment(ref nextSeq);
    journal.Line($"I {seq} {what}");
    var result = await harness.RunAsync(cdb, data);
    journal.Line(result.Good ? $"A {seq}" : $"E {seq} {(byte)result.Sense.Key} {result.Sense.Asc} {result.Sense.Ascq}");
    return result.Good;
}

/// <summary>One write(2) per line, in the order the lines are made.</summary>
internal sealed class Journal(string path) : IDisposable
{
    private readonly FileStream file = new(path, FileMode.Create, FileAccess.Write, FileShare.Read, 1);
    private readonly Lock gate = new();

    public void Line(string text)
    {
        var bytes = System.Text.Encoding.ASCII.GetBytes(text + " .\n");
        lock (gate)
            file.Write(bytes);
    }

    public void Dispose() => file.Dispose();
}

internal static class Cdbs
{
    public static byte[] Write16(long lba, int blocks, bool fua)
    {
        var c = new byte[16];
        c[0] = 0x8A;
        c[1] = fua ? (byte)0x08 : (byte)0;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(c.AsSpan(2), (ulong)lba);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(10), (uint)blocks);
        return c;
    }

    public static byte[] ZoneOut(ZoneAction action, long zone)
    {
        var c = new byte[16];
        c[0] = 0x94;
        c[1] = (byte)action;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(c.AsSpan(2), (ulong)zone);
        return c;
    }

    public static byte[] SyncCache16 => [0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
}

internal sealed class IgnoredEvents : IDeviceEvents
{
    public void ConnectionLost(string reason) { }
    public void ConnectionRestored() { }
    public void LockLost(string reason) { }
    public void Resized(long newSizeBytes) { }
}

internal sealed class NoNesting : INestedDeviceOpener
{
    public ValueTask<IBlockDevice> OpenAsync(string cfgstring, long size, int blockSize, CancellationToken cancellationToken)
        => throw new NotSupportedException("zbc does not stack on other devices.");
}
