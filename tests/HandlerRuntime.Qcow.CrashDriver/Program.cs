using HandlerRuntime.Handlers.Qcow;
using HandlerRuntime.Qcow.CrashDriver;
using HandlerRuntime.Sdk;
using HandlerRuntime.TestSupport;

// Usage: crash-driver <image> <seed> <max write bytes> <unmap: 0|1> [cache option]
// Prints "READY", then for every step "BEGIN <i>" before it and, for flushes and FUA
// writes, "ACK <i>" once it completed. Runs until killed.
if (args.Length < 4)
{
    Console.Error.WriteLine("usage: crash-driver <image> <seed> <max write bytes> <unmap: 0|1> [cache=<size>]");
    return 2;
}
var config = args[0] + (args.Length > 4 ? "?" + args[4] : "");
var device = await new QcowHandler().OpenAsync(OpenContexts.For(config, lunName: "crash"), CancellationToken.None);
var workload = new CrashWorkload(int.Parse(args[1]), device.Geometry.SizeBytes, int.Parse(args[2]), args[3] == "1");
var output = Console.Out;
output.WriteLine("READY");
output.Flush();
while (true)
{
    var step = workload.Next();
    output.WriteLine($"BEGIN {step.Index}");
    output.Flush();
    await CrashWorkload.ApplyAsync(device, step);
    if (step.DurableOnAck)
    {
        output.WriteLine($"ACK {step.Index}");
        output.Flush();
    }
}
