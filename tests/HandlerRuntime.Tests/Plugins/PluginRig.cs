using System.Text;
using HandlerRuntime.Luns;
using HandlerRuntime.Plugins;
using HandlerRuntime.Scsi;
using Serilog.Extensions.Logging;

namespace HandlerRuntime.Tests.Plugins;

/// <summary>A real plugin host and LUN registry over a handler path of a test's own, with the log captured.</summary>
internal sealed class PluginRig : IAsyncDisposable
{
    public PluginRig(string name)
    {
        Dir = new TempDir(name);
        Directory.CreateDirectory(HandlerPath);
        var log = Logs.Logger();
        Host = new PluginHost(HandlerPath, log);
        Registry = new LunRegistry(Host, Targets, Dir.File("state"), log, new SerilogLoggerFactory(log));
    }

    public TempDir Dir { get; }
    public CollectingSink Logs { get; } = new();
    public TargetRegistry Targets { get; } = new();
    public PluginHost Host { get; }
    public LunRegistry Registry { get; }
    public string HandlerPath => Dir.File("handlers");

    /// <summary>What the versioned fixture answers to its vendor opcode C1h: its build version.</summary>
    public static async Task<string> VersionServingAsync(ScsiTarget target, ItNexus nexus)
    {
        var r = await ScsiHarness.RunOnAsync(target, nexus, [0xC1, 0, 0, 0, 0, 0], allocation: 64);
        Assert.True(r.Good, r.ToString());
        return Encoding.ASCII.GetString(r.DataIn);
    }

    /// <summary>A new nexus whose pending unit attentions (power on, reset) have been taken.</summary>
    public static async Task<ItNexus> ReadyNexusAsync(ScsiTarget target)
    {
        var nexus = ScsiHarness.NewNexus();
        await ClearUnitAttentionsAsync(target, nexus);
        return nexus;
    }

    public static async Task ClearUnitAttentionsAsync(ScsiTarget target, ItNexus nexus)
    {
        for (var i = 0; i < 8; i++)
            if ((await ScsiHarness.RunOnAsync(target, nexus, Cdbs.TestUnitReady())).Good)
                return;
    }

    public static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, Func<string> describe)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"condition not met within {timeout}: {describe()}");
            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Registry.DisposeAsync();
        await Host.DisposeAsync();
        Dir.Dispose();
    }
}
