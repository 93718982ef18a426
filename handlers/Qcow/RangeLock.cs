namespace HandlerRuntime.Handlers.Qcow;

/// <summary>
/// Locks ranges of guest clusters: writers exclude everyone on overlapping clusters,
/// readers exclude only writers. It keeps a host cluster from being freed and reused
/// while a command still reads or writes it outside the metadata lock.
/// </summary>
/// <remarks>
/// An uncontended acquire and release allocate nothing: holders are structs in a list,
/// and the signal that wakes waiters is made only when someone has to wait.
/// </remarks>
internal sealed class RangeLock
{
    private readonly object gate = new();
    private readonly List<Holder> held = [];
    private TaskCompletionSource? released;   // null while nobody waits
    private long nextId;

    private readonly record struct Holder(long Id, long First, long Last, bool Shared);

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
                    var id = ++nextId;
                    held.Add(new Holder(id, firstCluster, lastCluster, shared));
                    return new Releaser(this, id);
                }
                released ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = released.Task;
            }
            await wait.WaitAsync(cancellationToken);
        }
    }

    private void Release(long id)
    {
        TaskCompletionSource? signal;
        lock (gate)
        {
            for (var i = 0; i < held.Count; i++)
                if (held[i].Id == id)
                {
                    held.RemoveAt(i);
                    break;
                }
            signal = released;
            released = null;
        }
        signal?.SetResult();
    }

    public readonly struct Releaser : IDisposable
    {
        private readonly RangeLock owner;
        private readonly long id;

        internal Releaser(RangeLock owner, long id)
        {
            this.owner = owner;
            this.id = id;
        }

        public void Dispose() => owner.Release(id);
    }
}
