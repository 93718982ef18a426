using System.Globalization;
using HandlerRuntime.Handlers.Zbc;
using HandlerRuntime.Sdk;
using HandlerRuntime.TestSupport;
using HandlerRuntime.Zbc.Testing;

// Crash-trial victim: opens an existing zbc device file through the SCSI core and runs
// ZbcTraffic on it until killed (or for a minute). The journal goes to a file, one
// write(2) per line, each line ending in " ." so that a line cut short is recognisable.
//
// usage: HandlerRuntime.Zbc.CrashDriver <device file> <journal file> <seed> <write cache 1|0>

if (args.Length != 4)
{
    Console.Error.WriteLine("usage: HandlerRuntime.Zbc.CrashDriver <device file> <journal file> <seed> <write cache 1|0>");
    return 2;
}
var seed = int.Parse(args[2], CultureInfo.InvariantCulture);
var context = OpenContexts.For("@" + args[0], lunName: "crash");
var device = await new ZbcHandler().OpenAsync(context, CancellationToken.None);
await using var harness = new ScsiHarness(device, subtype: "zbc", writeCache: args[3] == "1");
await harness.ClearUnitAttentionAsync();
var all = new ZoneDescriptor[4096];
var count = (await ((IZonedBlockDevice)device).ReportZonesAsync(0, ZoneReportingOptions.All, false, all, CancellationToken.None)).Written;

using var journal = new FileStream(args[1], FileMode.Create, FileAccess.Write, FileShare.Read, 1);
var gate = new Lock();
void Line(string text)
{
    var bytes = System.Text.Encoding.ASCII.GetBytes(text + " .\n");
    lock (gate)
        journal.Write(bytes);
}
Line("READY");
using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
await new ZbcTraffic(harness, all[..count], device.Geometry.LogicalBlockSize, Line, seed).RunAsync(stop.Token);
return 0;
