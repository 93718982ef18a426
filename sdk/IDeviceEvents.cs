namespace HandlerRuntime.Sdk;

/// <summary>Events a handler reports to the runtime about its device.</summary>
public interface IDeviceEvents
{
    /// <summary>
    /// The backing store became unreachable (a remote peer, a lost path). Until
    /// <see cref="ConnectionRestored"/>, the runtime answers media commands with NOT READY,
    /// in transition, so initiators retry instead of failing.
    /// </summary>
    void ConnectionLost(string reason);

    /// <summary>The backing store is reachable again.</summary>
    void ConnectionRestored();

    /// <summary>An exclusive lock on the backing store was lost (another writer took it); writes are refused until restored.</summary>
    void LockLost(string reason);

    /// <summary>The device changed size on its own (for example the remote export grew); initiators get CAPACITY DATA HAS CHANGED.</summary>
    void Resized(long newSizeBytes);

    /// <summary>
    /// For a store that arbitrates between gateways by itself (an exclusive lock on a shared
    /// image, a replication role): puts the LU in <paramref name="state"/> as an implicit ALUA
    /// transition. Every other I_T nexus gets a unit attention (2Ah/06h) and REPORT TARGET PORT
    /// GROUPS reports the new state; <paramref name="reason"/> is logged.
    /// </summary>
    void AccessStateChanged(DeviceAccessState state, string reason);
}
