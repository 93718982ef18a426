using HandlerRuntime.Sdk;

namespace HandlerRuntime.Luns;

/// <summary>
/// The event sink a handler receives at open time. The LU it reports to does not exist
/// yet while the device opens, so events are relayed once it is attached; until then
/// the last state is kept and replayed.
/// </summary>
internal sealed class DeviceEventsRelay : IDeviceEvents, IAccessStateEvents
{
    private readonly object gate = new();
    private IDeviceEvents? target;
    private Action<IDeviceEvents>? pending;

    public void Attach(IDeviceEvents lun)
    {
        lock (gate)
        {
            target = lun;
            pending?.Invoke(lun);
            pending = null;
        }
    }

    private void Send(Action<IDeviceEvents> e)
    {
        lock (gate)
        {
            if (target is null)
                pending = e; // only the newest state matters
            else
                e(target);
        }
    }

    public void ConnectionLost(string reason) => Send(t => t.ConnectionLost(reason));
    public void ConnectionRestored() => Send(t => t.ConnectionRestored());
    public void LockLost(string reason) => Send(t => t.LockLost(reason));
    public void Resized(long newSizeBytes) => Send(t => t.Resized(newSizeBytes));
    public void AccessStateChanged(DeviceAccessState state, string reason) => Send(t => (t as IAccessStateEvents)?.AccessStateChanged(state, reason));
}
