using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

internal static class CapacityCommands
{
    public static ValueTask ReadCapacity10(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        if ((cdb[8] & 1) == 0 && Cdb.U32(cdb, 2) != 0)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2));
        var d = DataIn.Begin(task, 8);
        var maxLba = (ulong)lun.BlockCount - 1;
        Cdb.Put32(d, 0, maxLba > uint.MaxValue ? uint.MaxValue : (uint)maxLba);
        Cdb.Put32(d, 4, (uint)lun.BlockSize);
        return DataIn.End(task, 8, 8);
    }

    public static ValueTask ReadCapacity16(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        if ((cdb[14] & 1) == 0 && Cdb.U64(cdb, 2) != 0)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2));
        var d = DataIn.Begin(task, 32);
        Cdb.Put64(d, 0, (ulong)lun.BlockCount - 1);
        Cdb.Put32(d, 8, (uint)lun.BlockSize);
        d[12] = ZonedCommands.ReadCapacityBasis(lun);
        d[13] = (byte)(lun.Geometry.PhysicalBlockExponent & 0x0F);
        if ((lun.Capabilities & DeviceCapabilities.Unmap) != 0)
        {
            d[14] = 0x80; // LBPME
            if ((lun.Capabilities & DeviceCapabilities.UnmapReadsZeroes) != 0)
                d[14] |= 0x40; // LBPRZ
        }
        return DataIn.End(task, 32, Cdb.U32(cdb, 10));
    }
}
