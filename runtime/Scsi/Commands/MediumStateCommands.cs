using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

/// <summary>START STOP UNIT and PREVENT ALLOW MEDIUM REMOVAL (SBC-3 5.13, 5.21).</summary>
internal static class MediumStateCommands
{
    public static async ValueTask StartStopUnit(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        var power = cdb[4] >> 4;
        var noFlush = (cdb[4] & 0x04) != 0;
        var loej = (cdb[4] & 0x02) != 0;
        var start = (cdb[4] & 0x01) != 0;
        // A virtual medium has no power states: any POWER CONDITION is accepted and changes
        // nothing (libiscsi's PwrCnd test expects every value to succeed). Only with POWER
        // CONDITION 0 do START and LOEJ mean load or eject.
        if (power != 0 || !loej)
            return;
        if (!lun.Medium.Removable)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(4, 1)); // nothing to eject
        // Ejecting writes back what the cache holds first, unless told not to.
        if (!start && !noFlush && lun.Medium.Loaded)
            await lun.Device.FlushAsync(task.AbortToken);
        lun.Medium.LoadOrEject(start);
    }

    public static ValueTask PreventAllowMediumRemoval(ScsiLun lun, ScsiTask task)
    {
        var prevent = task.CdbSpan[4] & 0x03;
        if (prevent > 1)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(4, 1)); // 10b and 11b are for changers
        lun.Medium.SetPrevent(task.Nexus, prevent == 1);
        return default;
    }
}
