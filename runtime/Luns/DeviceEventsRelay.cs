using HandlerRuntime.Sdk;

namespace HandlerRuntime.Luns;

/// <summary>
/// The event sink a handler receives at open time. The LU it reports to does not exist
/// yet while the device opens, so events are relayed once it is attached; until then they
/// are kept, in order, and replayed.
/// </summary>
internal sealed class DeviceEventsRelay : IDeviceEvents
{
    private readonly object gate = new();
    private IDeviceEvents? target;
    private List<Action<IDeviceEvents>>? pending;

    public void Attach(IDeviceEvents lun)
    {
        lock (gate)
        {
            target = lun;
            foreach (var e in pending ?? [])
                e(lun);
            pending = null;
        }
    }

    private void Send(Action<IDeviceEvents> e)
    {
        lock (gate)
        {
            if (target is null)
                (pending ??= []).Add(e);
            else
                e(target);
        }
    }

    public void ConnectionLost(string reason) => Send(t => t.ConnectionLost(reason));
    public void ConnectionRestored() => Send(t => t.ConnectionRestored());
    public void LockLost(string reason) => Send(t => t.LockLost(reason));
    public void Resized(long newSizeBytes) => Send(t => t.Resized(newSizeBytes));
    public void AccessStateChanged(DeviceAccessState state, string reason) => Send(t => t.AccessStateChanged(state, reason));
}
