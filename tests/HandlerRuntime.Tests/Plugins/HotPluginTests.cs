using System.Text;
using HandlerRuntime.Luns;
using HandlerRuntime.Plugins;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;
using Serilog.Extensions.Logging;

namespace HandlerRuntime.Tests.Plugins;

/// <summary>
/// Hot add and hot upgrade with real plugin builds loaded into real collectible
/// contexts, while a LUN serves verified I/O through the SCSI core.
/// </summary>
public sealed class HotPluginTests : IAsyncLifetime
{
    private readonly PluginRig rig = new("hrt-plugins");
    private PluginHost host => rig.Host;
    private LunRegistry registry => rig.Registry;
    private CollectingSink logs => rig.Logs;
    private TempDir dir => rig.Dir;
    private string HandlerPath => rig.HandlerPath;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await rig.DisposeAsync();

    private static Task<string> VersionServingAsync(ScsiTarget target, ItNexus nexus) => PluginRig.VersionServingAsync(target, nexus);

    private static Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, Func<string> describe) => PluginRig.WaitUntilAsync(condition, timeout, describe);

    [Fact]
    public async Task A_plugin_folder_dropped_in_while_running_is_usable_within_5_seconds()
    {
        await host.StartAsync();
        Assert.False(host.TryGetHandler("versioned", out _, out _));

        PluginFolders.Install(PluginFolders.V1, HandlerPath);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        await WaitUntilAsync(() => Task.FromResult(host.TryGetHandler("versioned", out _, out _)), TimeSpan.FromSeconds(5), () => logs.Text);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5));

        var entry = await registry.CreateAsync(new LunDefinition("hot", "versioned/" + dir.File("hot.img")) { Size = 1 << 20 }, default);
        var nexus = ScsiHarness.NewNexus();
        await ClearUaAsync(entry.Target, nexus);
        Assert.Equal("1.0.0", await VersionServingAsync(entry.Target, nexus));
    }

    [Fact]
    public async Task Replacing_a_plugin_upgrades_its_luns_while_io_runs_without_a_failed_command()
    {
        PluginFolders.Install(PluginFolders.V1, HandlerPath);
        await host.StartAsync();
        var entry = await registry.CreateAsync(new LunDefinition("up", "versioned/" + dir.File("up.img")) { Size = 4 << 20 }, default);
        var nexus = ScsiHarness.NewNexus();
        await ClearUaAsync(entry.Target, nexus);
        Assert.Equal("1.0.0", await VersionServingAsync(entry.Target, nexus));

        // I/O that runs across the upgrade: every block written is read back and compared.
        using var stop = new CancellationTokenSource();
        var failures = new List<string>();
        var ios = 0;
        var io = Task.Run(async () =>
        {
            var rng = new Random(7);
            while (!stop.IsCancellationRequested)
            {
                var lba = (uint)rng.Next(0, 8192 - 8);
                var data = new byte[8 * 512];
                rng.NextBytes(data);
                var w = await ScsiHarness.RunOnAsync(entry.Target, nexus, Cdbs.Write10(lba, 8), data);
                var r = await ScsiHarness.RunOnAsync(entry.Target, nexus, Cdbs.Read10(lba, 8));
                if (!w.Good || !r.Good || !r.DataIn.AsSpan().SequenceEqual(data))
                    lock (failures) failures.Add($"lba {lba}: write {w}, read {r}");
                Interlocked.Increment(ref ios);
            }
        });

        await WaitUntilAsync(() => Task.FromResult(Volatile.Read(ref ios) > 50), TimeSpan.FromSeconds(10), () => "I/O did not start");
        PluginFolders.Install(PluginFolders.V2, HandlerPath);
        await WaitUntilAsync(async () => await VersionServingAsync(entry.Target, nexus) == "2.0.0", TimeSpan.FromSeconds(10), () => logs.Text);
        var after = Volatile.Read(ref ios);
        await WaitUntilAsync(() => Task.FromResult(Volatile.Read(ref ios) > after + 50), TimeSpan.FromSeconds(10), () => "I/O stopped after the upgrade");
        stop.Cancel();
        await io;

        Assert.Empty(failures);
        Assert.Contains("upgraded to 2.0.0", logs.Text);
        Assert.Same(host.Plugins.Single(), registry.Find("up")!.Plugin);
        Assert.Equal("2.0.0", host.Plugins.Single().Version);
    }

    [Fact]
    public async Task A_broken_build_keeps_the_old_version_serving_and_says_why()
    {
        PluginFolders.Install(PluginFolders.V1, HandlerPath);
        await host.StartAsync();
        var entry = await registry.CreateAsync(new LunDefinition("keep", "versioned/" + dir.File("keep.img")) { Size = 1 << 20 }, default);
        var nexus = ScsiHarness.NewNexus();
        await ClearUaAsync(entry.Target, nexus);

        var dll = Path.Combine(HandlerPath, "VersionedHandler", "HandlerRuntime.Tests.VersionedHandler.dll");
        await File.WriteAllBytesAsync(dll, Encoding.ASCII.GetBytes("this is not an assembly"));
        await host.ScanAsync();

        Assert.Contains("failed to load", logs.Text);
        Assert.Contains("keeps serving from its previous version", logs.Text);
        Assert.Equal("1.0.0", await VersionServingAsync(entry.Target, nexus));
        var w = await ScsiHarness.RunOnAsync(entry.Target, nexus, Cdbs.Write10(0, 1), new byte[512]);
        Assert.True(w.Good, w.ToString());

        // A good build afterwards is taken.
        PluginFolders.Install(PluginFolders.V2, HandlerPath);
        await host.ScanAsync();
        Assert.Equal("2.0.0", await VersionServingAsync(entry.Target, nexus));
    }

    [Fact]
    public async Task A_second_plugin_claiming_a_subtype_is_refused_naming_both()
    {
        PluginFolders.Install(PluginFolders.V1, HandlerPath);
        PluginFolders.Install(PluginFolders.V2, HandlerPath, "Zclash");
        await host.StartAsync();

        Assert.Single(host.Plugins);
        Assert.True(host.TryGetHandler("versioned", out _, out var owner));
        Assert.Equal("VersionedHandler", owner.Name);
        var text = logs.Text;
        Assert.Contains("Zclash", text);
        Assert.Contains("is refused: its subtype 'versioned' is already served by plugin VersionedHandler", text);
    }

    [Fact]
    public async Task A_plugin_whose_new_version_cannot_open_the_lun_is_rolled_back()
    {
        PluginFolders.Install(PluginFolders.V1, HandlerPath);
        await host.StartAsync();
        var img = dir.File("gone.img");
        var entry = await registry.CreateAsync(new LunDefinition("rb", "versioned/" + img) { Size = 1 << 20 }, default);
        var nexus = ScsiHarness.NewNexus();
        await ClearUaAsync(entry.Target, nexus);

        // Make the reopen fail: the backing file's directory becomes unreadable is not possible as root,
        // so replace the file by a directory: FileStream cannot open it and the old version must come back.
        File.Move(img, img + ".moved");
        Directory.CreateDirectory(img);
        PluginFolders.Install(PluginFolders.V2, HandlerPath);
        await host.ScanAsync();

        Assert.Contains("rolled back", logs.Text);
        Assert.Equal("1.0.0", host.Plugins.Single().Version);
        Directory.Delete(img);
        File.Move(img + ".moved", img);
    }

    private static Task ClearUaAsync(ScsiTarget target, ItNexus nexus) => PluginRig.ClearUnitAttentionsAsync(target, nexus);
}
