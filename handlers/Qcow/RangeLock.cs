namespace HandlerRuntime.Handlers.Qcow;

/// <summary>
/// Locks ranges of guest clusters: writers exclude everyone on overlapping clusters,
/// readers exclude only writers. It keeps a host cluster from being freed and reused
/// while a command still reads or writes it outside the metadata lock.
/// </summary>
internal sealed class RangeLock
{
    private readonly object gate = new();
    private readonly List<Holder> held = [];
    private TaskCompletionSource released = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal sealed record Holder(long First, long Last, bool Shared);

    public async ValueTask<Releaser> AcquireAsync(long firstCluster, long lastCluster, bool shared, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (gate)
            {
                var conflict = false;
                foreach (var h in held)
                    if (h.First <= lastCluster && firstCluster <= h.Last && !(h.Shared && shared))
                    {
                        conflict = true;
                        break;
                    }
                if (!conflict)
                {
                    var holder = new Holder(firstCluster, lastCluster, shared);
                    held.Add(holder);
                    return new Releaser(this, holder);
                }
                wait = released.Task;
            }
            await wait.WaitAsync(cancellationToken);
        }
    }

    private void Release(Holder holder)
    {
        TaskCompletionSource signal;
        lock (gate)
        {
            held.Remove(holder);
            signal = released;
            released = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        signal.SetResult();
    }

    public readonly struct Releaser : IDisposable
    {
        private readonly RangeLock owner;
        private readonly Holder holder;

        internal Releaser(RangeLock owner, Holder holder)
        {
            this.owner = owner;
            this.holder = holder;
        }

        public void Dispose() => owner.Release(holder);
    }
}
