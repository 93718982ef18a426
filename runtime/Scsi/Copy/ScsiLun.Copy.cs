using HandlerRuntime.Scsi.Copy;

namespace HandlerRuntime.Scsi;

// The parts of a logical unit that EXTENDED COPY needs: its copy manager, the directory of
// the other LUs a copy may name, and a way for another LU's copy to use this LU's device
// without bypassing this LU's task set.
public sealed partial class ScsiLun
{
    /// <summary>This LU's copy manager: copies running, results held for RECEIVE COPY RESULTS.</summary>
    internal CopyManager Copies { get; } = new();

    /// <summary>
    /// The other LUs an EXTENDED COPY sent to this LU may copy from or to; null means only this
    /// LU itself (set by the LUN registry for every LU it creates).
    /// </summary>
    public ICopyTargetDirectory? CopyTargets { get; set; }

    /// <summary>
    /// Admits one step of another LU's EXTENDED COPY into this LU's task set, as a SIMPLE task
    /// of <paramref name="proxy"/>'s nexus: it waits behind ORDERED tasks, counts against a
    /// serializing device's single slot, holds off a quiesce (hot upgrade, resize, delete) while
    /// admitted, and is aborted by task management here like any task. False when not admitted
    /// within <paramref name="timeout"/> or aborted; the caller then gives up the copy, which
    /// releases its own LU and so breaks any cycle of copies waiting for each other's LUs.
    /// Pair a true result with <see cref="LeaveAfterCopyStep"/>.
    /// </summary>
    internal async ValueTask<bool> EnterForCopyStepAsync(ScsiTask proxy, TimeSpan timeout, CancellationToken ct)
    {
        proxy.ClearResponse();
        proxy.RunningOn = this;
        if (!taskSet.TryEnter(proxy))
        {
            var admission = proxy.WaitAdmissionAsync().AsTask();
            using (var cancel = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                if (await Task.WhenAny(admission, Task.Delay(timeout, cancel.Token)) != admission)
                    taskSet.Abort(t => t == proxy); // admits it, marked aborted, so it can leave
                cancel.Cancel();
            }
            await admission;
        }
        if (proxy.Aborted)
        {
            taskSet.Leave(proxy);
            return false;
        }
        return true;
    }

    /// <summary>Ends a step admitted by <see cref="EnterForCopyStepAsync"/>.</summary>
    internal void LeaveAfterCopyStep(ScsiTask proxy) => taskSet.Leave(proxy);
}
