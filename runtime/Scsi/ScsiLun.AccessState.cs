using HandlerRuntime.Scsi.Alua;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi;

/// <summary>A handler driving the LU's ALUA state (for example from an exclusive lock on a shared image).</summary>
public sealed partial class ScsiLun
{
    void IDeviceEvents.AccessStateChanged(DeviceAccessState state, string reason)
    {
        var to = (AsymmetricAccessState)(byte)state;
        if (to == AccessState)
            return;
        Log.Information("LUN {Lun}: the handler moves it to ALUA state {State} ({Reason})", Name, AluaStates.Name(to), reason);
        SetAccessState(to);
    }
}
