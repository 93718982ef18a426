using HandlerRuntime.Buffers;
using HandlerRuntime.Luns;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Plugins;

/// <summary>A LUN deleted while a fabric still holds it: what reaches it afterwards is answered, never held or run on the closed device.</summary>
public sealed class LunDeleteTests : IAsyncLifetime
{
    private readonly PluginRig rig = new("hrt-lun-delete");

    public async Task InitializeAsync()
    {
        PluginFolders.Install(PluginFolders.V1, rig.HandlerPath);
        await rig.Host.StartAsync();
    }

    public async Task DisposeAsync() => await rig.DisposeAsync();

    [Fact]
    public async Task A_command_sent_to_a_deleted_lun_is_answered_logical_unit_not_supported_at_once()
    {
        var entry = await rig.Registry.CreateAsync(new LunDefinition("gone", "versioned/" + rig.Dir.File("gone.img")) { Size = 1 << 20 }, default);
        var nexus = await PluginRig.ReadyNexusAsync(entry.Target);
        var held = entry.Lun; // what a fabric that looked the LUN up before the delete still has
        await rig.Registry.DeleteAsync("gone", default);

        var task = new ScsiTask { Nexus = nexus, ExpectedDataInLength = 512, Direction = DataDirection.In };
        task.SetCdb(Cdbs.Read10(0, 1));
        try
        {
            var run = held.ExecuteAsync(task).AsTask();
            Assert.Same(run, await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(10)))); // not held by the delete's quiesce
            await run;
            Assert.Equal(ScsiStatus.CheckCondition, task.Status);
            Assert.Equal((SenseKey.IllegalRequest, (byte)0x25, (byte)0x00), (task.Sense.Key, task.Sense.Asc, task.Sense.Ascq));
        }
        finally
        {
            task.Reset();
        }
    }
}
