using HandlerRuntime.Buffers;
using HandlerRuntime.Handlers.Ram;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.TestSupport;

/// <summary>
/// A ram/@ LUN of the real ram handler behind a target, with one command at a time run to
/// completion on the calling thread the way a fabric runs it (ram completes synchronously):
/// for allocation counts and micro-benchmarks of the SCSI core.
/// </summary>
public sealed class RamLun : IAsyncDisposable
{
    private readonly ScsiHarness harness;

    private RamLun(ScsiHarness harness) => this.harness = harness;

    /// <summary>A LUN of <paramref name="size"/> bytes in 512-byte blocks, its power-on unit attention consumed.</summary>
    public static async Task<RamLun> CreateAsync(long size)
    {
        var device = await new RamHandler().OpenAsync(OpenContexts.For("@", size, 512, lunName: "ram"), CancellationToken.None);
        var harness = new ScsiHarness(device, "ram", "ram");
        await harness.ClearUnitAttentionAsync();
        return new RamLun(harness);
    }

    /// <summary>Runs one command with a reused <paramref name="task"/>, expects GOOD, and recycles the task.</summary>
    public void Run(ScsiTask task, byte[] cdb, bool write, int bytes)
    {
        task.Nexus = harness.Nexus;
        task.Lun = 0;
        task.Attribute = TaskAttribute.Simple;
        task.SetCdb(cdb);
        if (write)
        {
            task.Direction = DataDirection.Out;
            task.DataOutBuffer = BufferPool.Shared.Rent(bytes);
            task.DataOutLength = bytes;
            task.ExpectedDataOutLength = bytes;
        }
        else
        {
            task.Direction = DataDirection.In;
            task.ExpectedDataInLength = bytes;
        }
        var run = harness.Target.ExecuteAsync(task);
        if (!run.IsCompletedSuccessfully)
            throw new InvalidOperationException("a ram command did not complete synchronously");
        run.GetAwaiter().GetResult();
        if (task.Status != ScsiStatus.Good)
            throw new InvalidOperationException($"command failed: {task.Status} {task.Sense}");
        task.Reset();
    }

    public ValueTask DisposeAsync() => harness.DisposeAsync();
}
