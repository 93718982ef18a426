using HandlerRuntime.Handlers.Qcow;
using Xunit;

namespace HandlerRuntime.Qcow.Tests;

/// <summary>The guest-cluster range lock: who excludes whom, and that the uncontended path allocates nothing.</summary>
public sealed class RangeLockTests
{
    /// <summary>An uncontended acquire completes synchronously; this takes its releaser without a wait.</summary>
    private static RangeLock.Releaser Acquired(ValueTask<RangeLock.Releaser> acquire)
    {
        Assert.True(acquire.IsCompletedSuccessfully, "an uncontended acquire waited");
        return acquire.GetAwaiter().GetResult();
    }

    [Fact]
    public async Task Readers_share_a_range_and_a_writer_waits_for_both()
    {
        var ranges = new RangeLock();
        var r1 = await ranges.AcquireAsync(0, 9, shared: true, default);
        var r2 = await ranges.AcquireAsync(5, 14, shared: true, default);
        var writer = ranges.AcquireAsync(9, 9, shared: false, default).AsTask();
        await Task.Delay(50);
        Assert.False(writer.IsCompleted, "a writer got a cluster two readers hold");
        r1.Dispose();
        await Task.Delay(50);
        Assert.False(writer.IsCompleted, "a writer got a cluster one reader still holds");
        r2.Dispose();
        (await writer.WaitAsync(TimeSpan.FromSeconds(5))).Dispose();
    }

    [Fact]
    public async Task A_writer_excludes_overlapping_readers_but_not_disjoint_ones()
    {
        var ranges = new RangeLock();
        var w = await ranges.AcquireAsync(10, 19, shared: false, default);
        var disjoint = ranges.AcquireAsync(20, 29, shared: true, default);
        Assert.True(disjoint.IsCompletedSuccessfully, "a reader of clusters 20-29 waited for a writer of 10-19");
        Acquired(disjoint).Dispose();
        var overlapping = ranges.AcquireAsync(0, 10, shared: true, default).AsTask();
        await Task.Delay(50);
        Assert.False(overlapping.IsCompleted, "a reader got cluster 10 while a writer holds it");
        w.Dispose();
        (await overlapping.WaitAsync(TimeSpan.FromSeconds(5))).Dispose();
    }

    [Fact]
    public async Task A_waiter_gives_up_when_cancelled_and_the_lock_stays_usable()
    {
        var ranges = new RangeLock();
        var w = await ranges.AcquireAsync(0, 0, shared: false, default);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await ranges.AcquireAsync(0, 0, shared: false, cts.Token));
        w.Dispose();
        (await ranges.AcquireAsync(0, 0, shared: false, default)).Dispose();
    }

    [Fact]
    public void Uncontended_acquire_and_release_allocate_nothing()
    {
        var ranges = new RangeLock();
        for (var i = 0; i < 100; i++)   // warm up: the list's backing array grows once
            Acquired(ranges.AcquireAsync(i, i, shared: false, default)).Dispose();
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10_000; i++)
            Acquired(ranges.AcquireAsync(i, i + 3, shared: i % 2 == 0, default)).Dispose();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
