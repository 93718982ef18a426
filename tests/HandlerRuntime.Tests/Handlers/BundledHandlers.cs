using HandlerRuntime.Luns;
using HandlerRuntime.Plugins;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging.Abstractions;

namespace HandlerRuntime.Tests.Handlers;

/// <summary>Opens devices with the bundled handler plugins exactly as the runtime loads them.</summary>
public sealed class BundledHandlers : IAsyncLifetime
{
    public PluginHost Host { get; } = new(RepoPaths.Handlers, new CollectingSink().Logger());

    public Task InitializeAsync() => Host.ScanAsync();

    public Task DisposeAsync() => Host.DisposeAsync().AsTask();

    public async Task<IBlockDevice> OpenAsync(string cfgstring, long size = 0, int blockSize = 0, bool readOnly = false)
    {
        var (subtype, config) = LunDefinition.SplitCfgstring(cfgstring)!.Value;
        Assert.True(Host.TryGetHandler(subtype, out var handler, out _), $"no handler for {subtype}");
        return await handler.OpenAsync(new DeviceOpenContext
        {
            LunName = "t",
            Config = config,
            RequestedSize = size,
            RequestedBlockSize = blockSize,
            ReadOnly = readOnly,
            Logger = NullLogger.Instance,
            StateDirectory = Path.GetTempPath(),
            Events = new NoEvents(),
            NestedDevices = null!,
        }, default);
    }

    private sealed class NoEvents : IDeviceEvents
    {
        public void ConnectionLost(string reason) { }
        public void ConnectionRestored() { }
        public void LockLost(string reason) { }
        public void Resized(long newSizeBytes) { }
    }
}
