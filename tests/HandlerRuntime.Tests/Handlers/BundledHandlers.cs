using HandlerRuntime.Luns;
using HandlerRuntime.Plugins;
using HandlerRuntime.Sdk;

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
        return await handler.OpenAsync(OpenContexts.For(config, size, blockSize, readOnly, lunName: "t"), default);
    }
}
