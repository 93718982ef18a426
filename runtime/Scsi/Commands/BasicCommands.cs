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
