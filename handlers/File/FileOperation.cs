using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;

namespace HandlerRuntime.Handlers.File;

/// <summary>
/// One read, write or flush of a <see cref="FileDevice"/> that may wait for the disk, run
/// on the thread pool (reads and flushes as their own work items, writes by the device's
/// <see cref="WriteQueue"/>). Operations are pooled per device and are their own awaitable, so
/// the I/O that must leave the caller's thread allocates nothing either (RandomAccess
/// allocates a task source per concurrent call). The continuation runs on the pool thread
/// that did the I/O: no second hop back.
/// </summary>
internal sealed class FileOperation : IThreadPoolWorkItem, IValueTaskSource
{
    public enum Kind : byte { Read, Write, WriteThenSync, Sync }

    private ManualResetValueTaskSourceCore<bool> core; // continuations run inline on the pool thread
    private readonly Pool owner;
    private Kind kind;
    private FileDevice device = null!;
    private Memory<byte> buffer;
    private long offset;

    private FileOperation(Pool owner) => this.owner = owner;

    /// <summary>Queues a read or a sync on the thread pool; the returned task completes when it is done.</summary>
    public static ValueTask Start(Pool pool, FileDevice device, Kind kind, long offset, Memory<byte> buffer)
    {
        var op = Prepare(pool, device, kind, offset, buffer);
        var task = op.Task;
        ThreadPool.UnsafeQueueUserWorkItem(op, preferLocal: false);
        return task;
    }

    /// <summary>An operation ready to run, for a caller that schedules it itself (<see cref="WriteQueue"/>).</summary>
    public static FileOperation Prepare(Pool pool, FileDevice device, Kind kind, long offset, Memory<byte> buffer)
    {
        var op = pool.Rent();
        op.device = device;
        op.kind = kind;
        op.offset = offset;
        op.buffer = buffer;
        return op;
    }

    public ValueTask Task => new(this, core.Version);

    public Kind OperationKind => kind;

    public long Offset => offset;

    public Memory<byte> Buffer => buffer;

    /// <summary>Ends the operation; its awaiter's continuation runs here, inline.</summary>
    public void Complete(Exception? error)
    {
        if (error is null)
            core.SetResult(true);
        else
            core.SetException(error);
    }

    void IThreadPoolWorkItem.Execute()
    {
        try
        {
            switch (kind)
            {
                case Kind.Read:
                    device.ReadBlocking(offset, buffer.Span);
                    break;
                case Kind.Sync:
                    device.Sync();
                    break;
                default:
                    throw new InvalidOperationException("writes run through the device's WriteQueue, not as work items of their own");
            }
        }
        catch (Exception e)
        {
            Complete(e);
            return;
        }
        Complete(null);
    }

    void IValueTaskSource.GetResult(short token)
    {
        try
        {
            core.GetResult(token);
        }
        finally
        {
            // Awaited once, as every ValueTask: the operation can serve the next caller.
            core.Reset();
            device = null!;
            buffer = default;
            owner.Return(this);
        }
    }

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => core.OnCompleted(continuation, state, token, flags);

    /// <summary>Operations kept for reuse (bounded: a burst beyond it allocates, then settles).</summary>
    internal sealed class Pool
    {
        private const int Keep = 256;
        private readonly Stack<FileOperation> free = new();

        public FileOperation Rent()
        {
            lock (free)
                if (free.TryPop(out var op))
                    return op;
            return new FileOperation(this);
        }

        public void Return(FileOperation op)
        {
            lock (free)
                if (free.Count < Keep)
                    free.Push(op);
        }
    }
}
