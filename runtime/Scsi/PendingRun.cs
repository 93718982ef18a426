using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;

namespace HandlerRuntime.Scsi;

/// <summary>
/// The end of a command whose device I/O did not complete at once, without an async state
/// machine: one per pooled <see cref="ScsiTask"/>, reused by every command it carries. (A
/// pooled state machine box is rented on the fabric's thread and returned on the thread
/// that completed the I/O, so the pool's per-thread cache missed and disk commands
/// allocated.)
/// </summary>
internal sealed class PendingRun : IValueTaskSource
{
    private readonly ScsiTask task;
    private readonly Action onDispatchDone;
    private ManualResetValueTaskSourceCore<bool> core; // the fabric's continuation runs on the thread that completed the I/O
    private ConfiguredValueTaskAwaitable.ConfiguredValueTaskAwaiter dispatch;
    private ScsiLun lun = null!;

    public PendingRun(ScsiTask task)
    {
        this.task = task;
        onDispatchDone = OnDispatchDone;
    }

    /// <summary>Completes when <paramref name="running"/> has and the LUN has ended the command.</summary>
    public ValueTask Await(ScsiLun lun, ValueTask running)
    {
        this.lun = lun;
        dispatch = running.ConfigureAwait(false).GetAwaiter();
        var done = new ValueTask(this, core.Version);
        dispatch.UnsafeOnCompleted(onDispatchDone);
        return done;
    }

    private void OnDispatchDone()
    {
        Exception? error = null;
        try
        {
            dispatch.GetResult();
        }
        catch (Exception e)
        {
            error = e;
        }
        dispatch = default;
        var ending = lun;
        lun = null!;
        ending.End(task, error);
        core.SetResult(true);
    }

    void IValueTaskSource.GetResult(short token)
    {
        core.GetResult(token);
        core.Reset(); // awaited once, as every ValueTask: ready for the task's next command
    }

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => core.OnCompleted(continuation, state, token, flags);
}
