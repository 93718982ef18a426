using System.Collections.Concurrent;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.File;

/// <summary>
/// Writes that must wait for the filesystem (where pwritev2 with RWF_NOWAIT is refused, as on
/// ext4) run one after another on a single pool thread per device instead of one pool thread
/// each. Concurrent pwrites to one file only contend for its inode lock, and a wakeup per write
/// costs more CPU than the write itself; a drainer that takes everything queued pays one wakeup
/// per burst. FUA writes of a burst share one fdatasync (group commit): each is acknowledged
/// only after that sync returns. Responses of a sweep leave together (<see cref="CompletionBatch"/>).
/// </summary>
internal sealed class WriteQueue(FileDevice device) : IThreadPoolWorkItem
{
    // Writes per turn before the drainer hands its thread back to the pool and queues itself again.
    private const int TurnLimit = 128;
    private const int SweepLimit = 32;
    private readonly ConcurrentQueue<FileOperation> pending = new();
    private readonly List<FileOperation> awaitingSync = []; // drainer only
    private int draining;

    public ValueTask Enqueue(FileOperation op)
    {
        var task = op.Task;
        pending.Enqueue(op);
        if (Interlocked.Exchange(ref draining, 1) == 0)
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        return task;
    }

    void IThreadPoolWorkItem.Execute()
    {
        var written = 0;
        while (true)
        {
            while (written < TurnLimit && !pending.IsEmpty)
                written += WriteSweep();
            if (written >= TurnLimit && !pending.IsEmpty)
            {
                ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false); // still draining: keep the flag
                return;
            }
            // A full fence, not a release store: the emptiness check below must not be read
            // before the flag is seen released, or a write queued in between (which found the
            // flag set and scheduled nothing) would wait for the next write to be noticed.
            Interlocked.Exchange(ref draining, 0);
            // That write found the flag set and did not schedule a drainer: take it over
            // unless another one started.
            if (pending.IsEmpty || Interlocked.Exchange(ref draining, 1) != 0)
                return;
        }
    }

    /// <summary>
    /// Up to <see cref="SweepLimit"/> queued writes, one fdatasync for the FUA ones among them.
    /// The plain writes' responses leave together before that sync, the FUA ones together
    /// after it: a batch holds its connection's other responses back, so none spans the sync.
    /// </summary>
    private int WriteSweep()
    {
        var written = 0;
        using (CompletionBatch.Begin())
        {
            while (written < SweepLimit && pending.TryDequeue(out var op))
            {
                written++;
                try
                {
                    device.WriteBlocking(op.Offset, op.Buffer.Span);
                }
                catch (Exception e)
                {
                    op.Complete(e);
                    continue;
                }
                if (op.OperationKind == FileOperation.Kind.WriteThenSync)
                    awaitingSync.Add(op);
                else
                    op.Complete(null); // its continuation may queue the next write: it lands in pending
            }
        }
        using (CompletionBatch.Begin())
            SyncAwaiting();
        return written;
    }

    private void SyncAwaiting()
    {
        if (awaitingSync.Count == 0)
            return;
        Exception? error = null;
        try
        {
            device.Sync();
        }
        catch (Exception e)
        {
            error = e;
        }
        foreach (var op in awaitingSync)
            op.Complete(error);
        awaitingSync.Clear();
    }
}
