namespace HandlerRuntime.Sdk;

/// <summary>The asymmetric access states (SPC-4 5.15.2.4) a handler can put its LU in, with their codes.</summary>
public enum DeviceAccessState : byte
{
    /// <summary>Every command is served; the path initiators should prefer.</summary>
    ActiveOptimized = 0x0,
    /// <summary>Every command is served, but another gateway is the preferred one.</summary>
    ActiveNonOptimized = 0x1,
    /// <summary>Only the commands SPC-4 lists for standby are served; media access gets NOT READY (04h/0Bh).</summary>
    Standby = 0x2,
    /// <summary>Media access gets NOT READY (04h/0Ch).</summary>
    Unavailable = 0x3,
    /// <summary>Changing between states; media access gets NOT READY (04h/0Ah) and initiators retry.</summary>
    Transitioning = 0xF,
}

/// <summary>
/// Optional, implemented by the <see cref="IDeviceEvents"/> a handler receives: for a store that
/// arbitrates between gateways by itself (an exclusive lock on a shared image, a replication role),
/// the handler drives the LU's ALUA state as an implicit transition. Every other I_T nexus is told
/// with a unit attention (2Ah/06h), and REPORT TARGET PORT GROUPS reports the new state. Test for it
/// with <c>context.Events is IAccessStateEvents</c>; a runtime without it keeps the LU active/optimized.
/// </summary>
public interface IAccessStateEvents
{
    /// <summary>Puts the LU in <paramref name="state"/>; <paramref name="reason"/> is logged.</summary>
    void AccessStateChanged(DeviceAccessState state, string reason);
}
