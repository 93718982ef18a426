using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging.Abstractions;

namespace HandlerRuntime.TestSupport;

/// <summary>
/// What the runtime hands a handler's OpenAsync, for code that opens devices itself (tests,
/// crash drivers, micro-benchmarks): device events go nowhere and nested opens are refused.
/// </summary>
public static class OpenContexts
{
    public static DeviceOpenContext For(string config, long size = 0, int blockSize = 0, bool readOnly = false, string lunName = "test") => new()
    {
        LunName = lunName,
        Config = config,
        RequestedSize = size,
        RequestedBlockSize = blockSize,
        ReadOnly = readOnly,
        Logger = NullLogger.Instance,
        StateDirectory = Path.GetTempPath(),
        Events = Nowhere.Instance,
        NestedDevices = Nowhere.Instance,
    };

    private sealed class Nowhere : IDeviceEvents, INestedDeviceOpener
    {
        public static readonly Nowhere Instance = new();
        public void ConnectionLost(string reason) { }
        public void ConnectionRestored() { }
        public void LockLost(string reason) { }
        public void Resized(long newSizeBytes) { }
        public void AccessStateChanged(DeviceAccessState state, string reason) { }
        public ValueTask<IBlockDevice> OpenAsync(string cfgstring, long size, int blockSize, bool readOnly, CancellationToken cancellationToken)
            => throw new NotSupportedException("devices opened here stack on no other device");
    }
}
