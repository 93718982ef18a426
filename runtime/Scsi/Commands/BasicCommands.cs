using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

internal static class BasicCommands
{
    public static ValueTask TestUnitReady(ScsiLun lun, ScsiTask task)
    {
        if (lun.NotReadySense is { } notReady)
            lun.Fail(task, notReady);
        return default;
    }

    /// <summary>READ DEFECT DATA(10)/(12): a virtual medium has no defects; an empty list in the format asked for.</summary>
    public static ValueTask ReadDefectData(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        var twelve = cdb[0] == 0xB7;
        var flags = (byte)(twelve ? cdb[1] & 0x1F : cdb[2] & 0x1F);
        var alloc = twelve ? Cdb.U32(cdb, 6) : Cdb.U16(cdb, 7);
        var d = DataIn.Begin(task, 8);
        d[1] = flags; // PLISTV/GLISTV echo what was requested: those lists exist and are empty
        return DataIn.End(task, twelve ? 8 : 4, alloc);
    }

    /// <summary>REQUEST SENSE: reports (and clears) a pending unit attention, else the LU's state, as data.</summary>
    public static ValueTask RequestSense(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        var descriptor = (cdb[1] & 1) != 0;
        SenseData sense;
        if (!lun.UnitAttentions.TryTake(task.Nexus, out sense))
            sense = lun.NotReadySense ?? new SenseData(SenseKey.NoSense, 0, 0);
        var buffer = DataIn.Begin(task, ScsiTask.MaxSenseLength);
        var n = SenseFormatter.Write(sense, descriptor, buffer);
        return DataIn.End(task, n, cdb[4]);
    }
}
