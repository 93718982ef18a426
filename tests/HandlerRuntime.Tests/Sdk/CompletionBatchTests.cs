using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Sdk;

/// <summary>
/// A handler's completion batch holds the fabric's sends until its outermost scope ends,
/// sends each deferred one exactly once, and defers nothing when no batch is open.
/// </summary>
public sealed class CompletionBatchTests
{
    private sealed class CountingSend(Action? onSend = null) : IDeferredSend
    {
        public int Sent;

        public void Send()
        {
            Sent++;
            onSend?.Invoke();
        }
    }

    [Fact]
    public void Without_a_batch_nothing_is_deferred()
    {
        var send = new CountingSend();
        Assert.False(CompletionBatch.TryDefer(send));
        Assert.Equal(0, send.Sent);
    }

    [Fact]
    public void The_outermost_scope_sends_once_each()
    {
        var a = new CountingSend();
        var b = new CountingSend();
        using (CompletionBatch.Begin())
        {
            using (CompletionBatch.Begin())
            {
                Assert.True(CompletionBatch.TryDefer(a));
            }
            Assert.Equal(0, a.Sent); // the inner scope does not send
            Assert.True(CompletionBatch.TryDefer(b));
        }
        Assert.Equal(1, a.Sent);
        Assert.Equal(1, b.Sent);
        Assert.False(CompletionBatch.TryDefer(a)); // closed again
    }

    [Fact]
    public void What_completes_while_a_batch_ends_is_sent_at_once_and_a_nested_batch_keeps_its_own_list()
    {
        var deferredAtEnd = true;
        var inner = new CountingSend();
        var first = new CountingSend(() =>
        {
            deferredAtEnd = CompletionBatch.TryDefer(new CountingSend());
            using (CompletionBatch.Begin())
                CompletionBatch.TryDefer(inner); // sent by this batch's end, not twice
        });
        var second = new CountingSend();
        using (CompletionBatch.Begin())
        {
            CompletionBatch.TryDefer(first);
            CompletionBatch.TryDefer(second);
        }
        Assert.False(deferredAtEnd);
        Assert.Equal(1, first.Sent);
        Assert.Equal(1, second.Sent);
        Assert.Equal(1, inner.Sent);
    }

    [Fact]
    public void Batches_are_per_thread()
    {
        using (CompletionBatch.Begin())
        {
            var elsewhere = true;
            var other = new Thread(() => elsewhere = CompletionBatch.TryDefer(new CountingSend()));
            other.Start();
            other.Join();
            Assert.False(elsewhere);
        }
    }
}
