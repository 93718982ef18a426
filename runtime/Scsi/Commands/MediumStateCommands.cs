using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

/// <summary>START STOP UNIT and PREVENT ALLOW MEDIUM REMOVAL (SBC-3 5.13, 5.21).</summary>
internal static class MediumStateCommands
{
    // POWER CONDITION values SBC-3 defines (0 START_VALID, 1 ACTIVE, 2 IDLE, 3 STANDBY, 5 obsolete sleep, 7 LU_CONTROL, A/B FORCE_*).
    private static ReadOnlySpan<byte> PowerConditions => [0x0, 0x1, 0x2, 0x3, 0x7, 0xA, 0xB];

    public static async ValueTask StartStopUnit(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        var power = cdb[4] >> 4;
        var noFlush = (cdb[4] & 0x04) != 0;
        var loej = (cdb[4] & 0x02) != 0;
        var start = (cdb[4] & 0x01) != 0;
        if (PowerConditions.IndexOf((byte)power) < 0)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(4, 7));
        // Only POWER CONDITION 0 makes START and LOEJ meaningful; the medium never spins down here.
        if (power != 0 || !loej)
            return;
        if (!lun.Medium.Removable)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(4, 1)); // nothing to eject
        // Ejecting writes back what the cache holds first, unless told not to.
        if (!start && !noFlush && lun.Medium.Loaded && (lun.Capabilities & DeviceCapabilities.Flush) != 0)
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
