using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

/// <summary>
/// REPORT SUPPORTED OPERATION CODES and REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS
/// (SPC-4 6.35, 6.36), generated from the command table that also validates every CDB,
/// so what the LU reports is what it does.
/// </summary>
internal static class SupportedCommands
{
    // Nominal and recommended timeouts, in seconds, for the timeouts descriptor.
    private const uint NominalTimeout = 1;
    private const uint RecommendedTimeout = 30;

    public static ValueTask ReportOperationCodes(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        var rctd = (cdb[2] & 0x80) != 0;
        var options = cdb[2] & 0x07;
        var alloc = Cdb.U32(cdb, 6);
        var opcode = cdb[3];
        var sa = Cdb.U16(cdb, 4);
        return options switch
        {
            0 => All(lun, task, rctd, alloc),
            1 when CommandTable.OpcodeHasServiceActions(opcode) => throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2)),
            1 => One(task, Offered(lun, CommandTable.Find(opcode, 0)), rctd, alloc),
            2 when !CommandTable.OpcodeHasServiceActions(opcode) => throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2)),
            2 => One(task, Offered(lun, CommandTable.Find(opcode, sa)), rctd, alloc),
            3 => One(task, Offered(lun, CommandTable.Find(opcode, CommandTable.OpcodeHasServiceActions(opcode) ? sa : 0)), rctd, alloc),
            _ => throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2, 2)),
        };
    }

    /// <summary>The command if this LU offers it.</summary>
    private static CommandInfo? Offered(ScsiLun lun, CommandInfo? command)
        => command is not null && command.IsAvailableOn(lun) ? command : null;

    private static ValueTask All(ScsiLun lun, ScsiTask task, bool rctd, uint alloc)
    {
        var commands = CommandTable.All.Where(c => Offered(lun, c) is not null).ToList();
        var size = rctd ? 20 : 8;
        var d = DataIn.Begin(task, 4 + size * commands.Count);
        var n = 4;
        foreach (var c in commands.OrderBy(c => c.Opcode).ThenBy(c => c.ServiceAction))
        {
            d[n] = c.Opcode;
            if (c.ServiceAction >= 0)
            {
                Cdb.Put16(d, n + 2, c.ServiceAction);
                d[n + 5] = 0x01; // SERVACTV
            }
            if (rctd)
                d[n + 5] |= 0x02; // CTDP
            Cdb.Put16(d, n + 6, c.Usage.Length);
            if (rctd)
                Timeouts(d[(n + 8)..]);
            n += size;
        }
        Cdb.Put32(d, 0, (uint)(n - 4));
        return DataIn.End(task, n, alloc);
    }

    private static ValueTask One(ScsiTask task, CommandInfo? command, bool rctd, uint alloc)
    {
        var d = DataIn.Begin(task, 4 + 32 + 12);
        if (command is null)
        {
            d[1] = 0x01; // SUPPORT 001b: not supported
            return DataIn.End(task, 4, alloc);
        }
        d[1] = (byte)(0x03 | (rctd ? 0x80 : 0)); // SUPPORT 011b: as the standard says; CTDP
        Cdb.Put16(d, 2, command.Usage.Length);
        command.Usage.CopyTo(d[4..]);
        var n = 4 + command.Usage.Length;
        if (rctd)
        {
            Timeouts(d[n..]);
            n += 12;
        }
        return DataIn.End(task, n, alloc);
    }

    private static void Timeouts(Span<byte> d)
    {
        Cdb.Put16(d, 0, 0x0A);
        Cdb.Put32(d, 4, NominalTimeout);
        Cdb.Put32(d, 8, RecommendedTimeout);
    }

    /// <summary>What the iSCSI fabric implements: ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET, TARGET RESET.</summary>
    public static ValueTask ReportTaskManagementFunctions(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        var repd = (cdb[2] & 0x80) != 0;
        var d = DataIn.Begin(task, 16);
        d[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x02; // ATS, ATSS, CTSS, LURS, TRS
        if (repd)
            d[3] = 0x0C;
        return DataIn.End(task, repd ? 16 : 4, Cdb.U32(cdb, 6));
    }
}
