using HandlerRuntime.Handlers.Qcow;
using HandlerRuntime.Qcow.CrashDriver;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging.Abstractions;

// Usage: crash-driver <image> <seed> <max write bytes> <unmap: 0|1> [cache option]
// Prints "READY", then for every step "BEGIN <i>" before it and, for flushes and FUA
// writes, "ACK <i>" once it completed. Runs until killed.
if (args.Length < 4)
{
    Console.Error.WriteLine("usage: crash-driver <image> <seed> <max write bytes> <unmap: 0|1> [cache=<size>]");
    return 2;
}
var config = args[0] + (args.Length > 4 ? "?" + args[4] : "");
var device = await new QcowHandler().OpenAsync(new DeviceOpenContext
{
    LunName = "crash",
    Config = config,
    Logger = NullLogger.Instance,
    StateDirectory = Path.GetTempPath(),
    Events = new NoEvents(),
    NestedDevices = new NoNesting(),
}, CancellationToken.None);
var workload = new CrashWorkload(int.Parse(args[1]), device.Geometry.SizeBytes, int.Parse(args[2]), args[3] == "1");
var output = Console.Out;
output.WriteLine("READY");
output.Flush();
while (true)
{
    var step = workload.Next();
    output.WriteLine($"BEGIN {step.Index}");
    output.Flush();
    switch (step.Kind)
    {
        case StepKind.Write:
        case StepKind.FuaWrite:
            await device.WriteAsync(step.Offset, CrashWorkload.Data(step), step.Kind == StepKind.FuaWrite ? WriteFlags.Fua : WriteFlags.None, CancellationToken.None);
            break;
        case StepKind.Unmap:
            await device.UnmapAsync(step.Offset, step.Length, CancellationToken.None);
            break;
        case StepKind.WriteZeroes:
            await device.WriteZeroesAsync(step.Offset, step.Length, step.Index % 2 == 0 ? ZeroFlags.MayUnmap : ZeroFlags.None, CancellationToken.None);
            break;
        case StepKind.Flush:
            await device.FlushAsync(CancellationToken.None);
            break;
    }
    if (step.DurableOnAck)
    {
        output.WriteLine($"ACK {step.Index}");
        output.Flush();
    }
}

internal sealed class NoEvents : IDeviceEvents
{
    public void ConnectionLost(string reason) { }
    public void ConnectionRestored() { }
    public void LockLost(string reason) { }
    public void Resized(long newSizeBytes) { }
}

internal sealed class NoNesting : INestedDeviceOpener
{
    public ValueTask<IBlockDevice> OpenAsync(string cfgstring, long size, int blockSize, CancellationToken cancellationToken)
        => throw new NotSupportedException("the crash driver opens no nested devices");
}
