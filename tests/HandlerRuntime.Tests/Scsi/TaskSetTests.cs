using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Scsi;

/// <summary>SAM task attributes, the device thread model and quiescing, observed from a device whose reads wait for the test.</summary>
public sealed class TaskSetTests
{
    /// <summary>A test handler's device: each read waits until released; it records how many run at once.</summary>
    private sealed class GateDevice(ThreadModel model) : IBlockDevice
    {
        private readonly SemaphoreSlim gate = new(0);
        private int inFlight;
        public int MaxInFlight;
        public int Started;

        public DeviceGeometry Geometry { get; } = DeviceGeometry.FromSize(1 << 20, 512);
        public DeviceCapabilities Capabilities => DeviceCapabilities.Write;
        public ThreadModel ThreadModel => model;

        public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
        {
            var now = Interlocked.Increment(ref inFlight);
            Interlocked.Increment(ref Started);
            lock (this) MaxInFlight = Math.Max(MaxInFlight, now);
            await gate.WaitAsync(cancellationToken);
            Interlocked.Decrement(ref inFlight);
        }

        public void Release(int n = 1) => gate.Release(n);

        public ValueTask DisposeAsync() => default;
    }

    private static async Task WaitForAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, what);
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task Ordered_waits_for_earlier_tasks_and_holds_back_later_ones_head_of_queue_overtakes()
    {
        var dev = new GateDevice(ThreadModel.Parallel);
        await using var h = new ScsiHarness(dev);
        await h.ClearUnitAttentionAsync();

        var a = h.RunAsync(Cdbs.Read10(0, 1));
        var b = h.RunAsync(Cdbs.Read10(1, 1));
        await WaitForAsync(() => dev.Started == 2, "two SIMPLE reads run at once");
        var ordered = h.RunAsync(Cdbs.Read10(2, 1), attribute: TaskAttribute.Ordered);
        var later = h.RunAsync(Cdbs.TestUnitReady());
        var hoq = h.RunAsync(Cdbs.TestUnitReady(), attribute: TaskAttribute.HeadOfQueue);

        Assert.True((await hoq).Good); // HEAD OF QUEUE does not wait
        await Task.Delay(100);
        Assert.Equal(2, dev.Started); // the ORDERED read has not started
        Assert.False(later.IsCompleted); // and the SIMPLE behind it waits too

        dev.Release(2);
        await Task.WhenAll(a, b);
        await WaitForAsync(() => dev.Started == 3, "the ORDERED read starts once the earlier ones finished");
        Assert.False(later.IsCompleted);
        dev.Release();
        Assert.True((await ordered).Good);
        Assert.True((await later).Good);
        Assert.Equal(2, dev.MaxInFlight);
    }

    [Fact]
    public async Task A_serializing_device_never_sees_two_requests_at_once()
    {
        var dev = new GateDevice(ThreadModel.SerializeRequests);
        await using var h = new ScsiHarness(dev);
        await h.ClearUnitAttentionAsync();
        var reads = Enumerable.Range(0, 5).Select(i => h.RunAsync(Cdbs.Read10((uint)i, 1))).ToList();
        for (var i = 1; i <= 5; i++)
        {
            await WaitForAsync(() => dev.Started == i, $"read {i} starts");
            await Task.Delay(20);
            Assert.Equal(i, dev.Started);
            dev.Release();
        }
        Assert.All(await Task.WhenAll(reads), r => Assert.True(r.Good));
        Assert.Equal(1, dev.MaxInFlight);
    }

    [Fact]
    public async Task Quiesce_lets_in_flight_commands_finish_and_holds_new_ones_until_resumed()
    {
        var dev = new GateDevice(ThreadModel.Parallel);
        await using var h = new ScsiHarness(dev);
        await h.ClearUnitAttentionAsync();
        var inFlight = h.RunAsync(Cdbs.Read10(0, 1));
        await WaitForAsync(() => dev.Started == 1, "the read starts");

        var quiesced = h.Lun.QuiesceAsync();
        var held = h.RunAsync(Cdbs.TestUnitReady());
        await Task.Delay(100);
        Assert.False(quiesced.IsCompleted);
        Assert.False(held.IsCompleted);

        dev.Release();
        Assert.True((await inFlight).Good);
        await quiesced;
        await Task.Delay(100);
        Assert.False(held.IsCompleted);
        h.Lun.Resume();
        Assert.True((await held).Good);
    }

    [Fact]
    public async Task Aborting_a_waiting_task_completes_it_without_running_it()
    {
        var dev = new GateDevice(ThreadModel.SerializeRequests);
        await using var h = new ScsiHarness(dev);
        await h.ClearUnitAttentionAsync();
        var first = h.RunAsync(Cdbs.Read10(0, 1));
        await WaitForAsync(() => dev.Started == 1, "first read starts");
        var second = h.RunAsync(Cdbs.Read10(1, 1));
        await Task.Delay(50);
        Assert.Equal(2, h.Lun.AbortTasks(_ => true));
        // The running one is cancelled in the device, the waiting one completes without reaching it;
        // both end as TASK ABORTED (the fabric decides what, if anything, the initiator is told).
        var results = await Task.WhenAll(first, second).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.All(results, r => Assert.Equal(ScsiStatus.TaskAborted, r.Status));
        Assert.Equal(1, dev.Started);
    }
}
