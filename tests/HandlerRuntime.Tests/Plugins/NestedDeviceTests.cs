using System.Text.Json.Nodes;
using HandlerRuntime.Luns;
using HandlerRuntime.Plugins;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Plugins;

/// <summary>
/// Devices stacked on other devices, with real plugin builds: the <c>vstack/</c> fixture
/// (a pass-through filter in a plugin of its own) over the <c>versioned/</c> fixture, whose
/// version, state directory and read-only setting are visible through the stack.
/// </summary>
public sealed class NestedDeviceTests : IAsyncLifetime
{
    private readonly PluginRig rig = new("hrt-nested");
    private PluginHost host => rig.Host;
    private LunRegistry registry => rig.Registry;
    private TempDir dir => rig.Dir;

    public async Task InitializeAsync()
    {
        PluginFolders.Install(PluginFolders.V1, rig.HandlerPath);
        PluginFolders.Install(PluginFolders.Stacking, rig.HandlerPath, "StackingHandler");
        await host.StartAsync();
    }

    public async Task DisposeAsync() => await rig.DisposeAsync();

    private Task<LunEntry> CreateAsync(string name, string cfgstring, bool readOnly = false)
        => registry.CreateAsync(new LunDefinition(name, cfgstring) { Size = 4 << 20, ReadOnly = readOnly }, default);

    private static JsonObject StatusOf(LunEntry entry) => entry.Lun.Device.Status!.GetStatus();

    private static Task<ItNexus> ReadyNexusAsync(LunEntry entry) => PluginRig.ReadyNexusAsync(entry.Target);

    private static Task<string> VersionAsync(LunEntry entry, ItNexus nexus) => PluginRig.VersionServingAsync(entry.Target, nexus);

    [Fact]
    public async Task The_inner_devices_features_capabilities_and_data_reach_the_lun_through_a_filter()
    {
        var entry = await CreateAsync("s", "vstack/versioned/" + dir.File("s.img"));
        var nexus = await ReadyNexusAsync(entry);

        Assert.Equal("1.0.0", await VersionAsync(entry, nexus)); // the inner command hook, forwarded by GetFeature
        Assert.Equal("1.0.0", StatusOf(entry)["version"]!.GetValue<string>()); // its status too
        Assert.True(entry.Lun.Device.Has(DeviceCapabilities.Write | DeviceCapabilities.Flush));

        var data = new byte[4096];
        new Random(3).NextBytes(data);
        Assert.True((await ScsiHarness.RunOnAsync(entry.Target, nexus, Cdbs.Write10(8, 8), data)).Good);
        var back = await ScsiHarness.RunOnAsync(entry.Target, nexus, Cdbs.Read10(8, 8));
        Assert.Equal(data, back.DataIn);
        using var file = File.OpenRead(dir.File("s.img"));
        file.Position = 8 * 512;
        var onDisk = new byte[4096];
        file.ReadExactly(onDisk);
        Assert.Equal(data, onDisk);
    }

    [Fact]
    public async Task A_read_only_lun_opens_its_nested_device_read_only()
    {
        var entry = await CreateAsync("ro", "vstack/versioned/" + dir.File("ro.img"), readOnly: true);
        Assert.True(StatusOf(entry)["readOnly"]!.GetValue<bool>());
        Assert.False(entry.Lun.Device.Has(DeviceCapabilities.Write));
    }

    [Fact]
    public async Task Each_nested_device_has_a_state_directory_of_its_own_inside_its_luns()
    {
        var a = await CreateAsync("a", "vstack/versioned/" + dir.File("a.img"));
        var b = await CreateAsync("b", "vstack/versioned/" + dir.File("b.img"));
        var stateA = StatusOf(a)["stateDirectory"]!.GetValue<string>();
        var stateB = StatusOf(b)["stateDirectory"]!.GetValue<string>();
        Assert.StartsWith(Path.Combine(a.StateDirectory, "nested", "versioned-"), stateA);
        Assert.StartsWith(Path.Combine(b.StateDirectory, "nested", "versioned-"), stateB);
        Assert.True(Directory.Exists(stateA));
        Assert.NotEqual(Path.GetFileName(stateA), Path.GetFileName(stateB)); // named by the cfgstring, not the subtype
    }

    [Fact]
    public async Task A_resize_the_nested_device_reports_reaches_the_luns_initiators()
    {
        var entry = await CreateAsync("grow", "vstack/versioned/" + dir.File("grow.img"));
        var nexus = await ReadyNexusAsync(entry);
        Assert.True((await ScsiHarness.RunOnAsync(entry.Target, nexus, [0xC2, 0, 0, 0, 0, 0])).Good); // the inner device grows by 1 MiB and says so

        var ua = await ScsiHarness.RunOnAsync(entry.Target, nexus, Cdbs.TestUnitReady());
        Assert.Equal(ScsiStatus.CheckCondition, ua.Status);
        Assert.Equal((SenseKey.UnitAttention, (byte)0x2A, (byte)0x09), (ua.Sense.Key, ua.Sense.Asc, ua.Sense.Ascq)); // CAPACITY DATA HAS CHANGED
        var cap = await ScsiHarness.RunOnAsync(entry.Target, nexus, Cdbs.ReadCapacity16());
        Assert.Equal((5L << 20) / 512 - 1, (long)Cdb.U64(cap.DataIn, 0));
    }

    [Fact]
    public async Task A_stacks_base_is_claimed_so_no_other_lun_or_stack_opens_it()
    {
        var img = dir.File("claimed.img");
        await CreateAsync("owner", "vstack/versioned/" + img);

        var direct = await Assert.ThrowsAsync<LunException>(() => CreateAsync("direct", "versioned/" + img));
        Assert.Contains("is the base of LUN owner", direct.Message);
        var stacked = await Assert.ThrowsAsync<LunException>(() => CreateAsync("stacked", "vstack/versioned/" + img));
        Assert.Contains("is in use by LUN owner", stacked.Message);

        // A LUN that serves a store directly cannot become another stack's base either.
        var plain = dir.File("plain.img");
        await CreateAsync("plain", "versioned/" + plain);
        var onTop = await Assert.ThrowsAsync<LunException>(() => CreateAsync("ontop", "vstack/versioned/" + plain));
        Assert.Contains("is in use by LUN plain", onTop.Message);

        // Once the owner is gone, its base is free.
        await registry.DeleteAsync("owner", default);
        await CreateAsync("direct", "versioned/" + img);
    }

    [Fact]
    public async Task A_failed_open_releases_the_base_it_had_claimed()
    {
        var img = dir.File("fail.img");
        // The filter opens its base, then the LUN is refused (a block size the store does not have): the claim must not stay.
        var refused = await Assert.ThrowsAsync<LunException>(() => registry.CreateAsync(new LunDefinition("bad", "vstack/versioned/" + img) { Size = 4 << 20, BlockSize = 4096 }, default));
        Assert.Contains("512-byte blocks", refused.Message);
        await CreateAsync("good", "vstack/versioned/" + img);
    }

    [Fact]
    public async Task A_hot_upgrade_of_the_nested_devices_plugin_reopens_the_lun_with_the_new_version_under_io()
    {
        var entry = await CreateAsync("up", "vstack/versioned/" + dir.File("up.img"));
        var nexus = await ReadyNexusAsync(entry);
        Assert.Equal("1.0.0", await VersionAsync(entry, nexus));

        using var stop = new CancellationTokenSource();
        var failures = new List<string>();
        var ios = 0;
        var io = Task.Run(async () =>
        {
            var rng = new Random(11);
            for (var n = 0; n < 200_000 && !stop.IsCancellationRequested; n++)
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
        await WaitAsync(() => Volatile.Read(ref ios) > 50, "I/O did not start");

        PluginFolders.Install(PluginFolders.V2, rig.HandlerPath); // the plugin BELOW the LUN's top device
        await host.ScanAsync();
        Assert.Equal("2.0.0", await VersionAsync(entry, nexus));
        var after = Volatile.Read(ref ios);
        await WaitAsync(() => Volatile.Read(ref ios) > after + 50, "I/O stopped after the upgrade");
        stop.Cancel();
        await io;

        Assert.Empty(failures);
        Assert.Contains("Handler plugin VersionedHandler upgraded to 2.0.0", rig.Logs.Text);
        Assert.Equal("StackingHandler", registry.Find("up")!.Plugin.Name); // the top device's plugin is unchanged
        Assert.Contains(registry.Find("up")!.StackPlugins, p => p.Name == "VersionedHandler" && p.Version == "2.0.0");
    }

    [Fact]
    public async Task A_plugin_built_against_a_newer_sdk_is_refused_with_both_versions_named()
    {
        PluginFolders.Install(PluginFolders.NextSdk, rig.HandlerPath, "NextSdk");
        await host.ScanAsync();
        Assert.DoesNotContain(host.Plugins, p => p.Name == "NextSdk");
        Assert.Contains($"was built against HandlerRuntime.Sdk 99.0.0, newer than this runtime's {PluginHost.SdkVersion.ToString(3)}", rig.Logs.Text);
    }

    private static Task WaitAsync(Func<bool> condition, string what)
        => PluginRig.WaitUntilAsync(() => Task.FromResult(condition()), TimeSpan.FromSeconds(20), () => what);
}
