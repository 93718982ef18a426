using HandlerRuntime.Scsi.Commands;

namespace HandlerRuntime.Scsi;

internal delegate ValueTask CommandExecutor(ScsiLun lun, ScsiTask task);

[Flags]
internal enum CommandFlags
{
    None = 0,
    /// <summary>Touches the medium: refused while the LU is not ready.</summary>
    MediumAccess = 1,
    /// <summary>Changes the medium: refused with DATA PROTECT when write protected.</summary>
    Writes = 2,
    /// <summary>Runs even with a unit attention pending (INQUIRY, REPORT LUNS, REQUEST SENSE).</summary>
    IgnoresUnitAttention = 4,
    /// <summary>READ(6)/WRITE(6): a transfer length of 0 means 256 blocks.</summary>
    ZeroMeans256 = 8,
}

/// <summary>
/// One supported command. <see cref="Usage"/> is the CDB usage data of REPORT SUPPORTED
/// OPERATION CODES (SPC-4 6.35): its length is the CDB length, and a bit that is clear
/// there is reserved or unsupported, so the dispatcher refuses a CDB that sets it.
/// One table thus drives both validation and what the LU reports.
/// </summary>
internal sealed record CommandInfo(string Name, byte[] Usage, CommandExecutor Execute, CommandFlags Flags = CommandFlags.None, RangeLayout Range = RangeLayout.None)
{
    public byte Opcode => Usage[0];

    /// <summary>The service action for opcodes that have them, else -1.</summary>
    public int ServiceAction { get; init; } = -1;
}

/// <summary>Every command the generic emulation answers, indexed by opcode and service action.</summary>
internal static class CommandTable
{
    private static readonly CommandInfo?[] ByOpcode = new CommandInfo?[256];
    private static readonly Dictionary<int, CommandInfo> ByServiceAction = new();
    private static readonly bool[] HasServiceActions = new bool[256];
    private static readonly List<CommandInfo> all = new();

    public static IReadOnlyList<CommandInfo> All => all;

    static CommandTable()
    {
        const CommandFlags M = CommandFlags.MediumAccess, W = CommandFlags.Writes | CommandFlags.MediumAccess, U = CommandFlags.IgnoresUnitAttention;

        Add("TEST UNIT READY", [0x00, 0, 0, 0, 0, 0], BasicCommands.TestUnitReady);
        Add("REQUEST SENSE", [0x03, 0x01, 0, 0, 0xFF, 0], BasicCommands.RequestSense, U);
        Add("INQUIRY", [0x12, 0x01, 0xFF, 0xFF, 0xFF, 0], InquiryCommand.Execute, U);
        Add("MODE SELECT(6)", [0x15, 0x11, 0, 0, 0xFF, 0], ModeCommands.ModeSelect6);
        Add("MODE SENSE(6)", [0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0], ModeCommands.ModeSense6);
        Add("MODE SELECT(10)", [0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], ModeCommands.ModeSelect10);
        Add("MODE SENSE(10)", [0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0], ModeCommands.ModeSense10);
        Add("READ CAPACITY(10)", [0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0], CapacityCommands.ReadCapacity10, M);
        Add("READ CAPACITY(16)", [0x9E, 0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0], CapacityCommands.ReadCapacity16, M, sa: 0x10);

        Add("READ(6)", [0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0], MediumCommands.Read, M | CommandFlags.ZeroMeans256, RangeLayout.Cdb6);
        Add("READ(10)", [0x28, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.Read, M, RangeLayout.Cdb10);
        Add("READ(12)", [0xA8, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.Read, M, RangeLayout.Cdb12);
        Add("READ(16)", [0x88, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.Read, M, RangeLayout.Cdb16);
        Add("WRITE(6)", [0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0], MediumCommands.Write, W | CommandFlags.ZeroMeans256, RangeLayout.Cdb6);
        Add("WRITE(10)", [0x2A, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.Write, W, RangeLayout.Cdb10);
        Add("WRITE(12)", [0xAA, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.Write, W, RangeLayout.Cdb12);
        Add("WRITE(16)", [0x8A, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.Write, W, RangeLayout.Cdb16);
        Add("WRITE AND VERIFY(10)", [0x2E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.WriteAndVerify, W, RangeLayout.Cdb10);
        Add("WRITE AND VERIFY(12)", [0xAE, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.WriteAndVerify, W, RangeLayout.Cdb12);
        Add("WRITE AND VERIFY(16)", [0x8E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.WriteAndVerify, W, RangeLayout.Cdb16);
        Add("VERIFY(10)", [0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.Verify, M, RangeLayout.Cdb10);
        Add("VERIFY(12)", [0xAF, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.Verify, M, RangeLayout.Cdb12);
        Add("VERIFY(16)", [0x8F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.Verify, M, RangeLayout.Cdb16);
        Add("SYNCHRONIZE CACHE(10)", [0x35, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.SynchronizeCache, M, RangeLayout.Cdb10);
        Add("SYNCHRONIZE CACHE(16)", [0x91, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.SynchronizeCache, M, RangeLayout.Cdb16);
        Add("WRITE SAME(10)", [0x41, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.WriteSame, W, RangeLayout.Cdb10);
        Add("WRITE SAME(16)", [0x93, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.WriteSame, W, RangeLayout.Cdb16);
        Add("UNMAP", [0x42, 0, 0, 0, 0, 0, 0x3F, 0xFF, 0xFF, 0], MediumCommands.Unmap, W);
        // EXTENDED COPY(LID1) and RECEIVE COPY RESULTS (runtime/Scsi/Copy). EXTENDED COPY is not
        // flagged Writes: this LU may be only the copy source; each destination's protection is
        // checked by the copy itself.
        Add("EXTENDED COPY(LID1)", [0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], Copy.ExtendedCopyCommand.Execute, M, sa: 0x00);
        Add("RECEIVE COPY STATUS(LID1)", [0x84, 0x00, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], Copy.ReceiveCopyResultsCommand.CopyStatus, sa: 0x00);
        Add("RECEIVE COPY OPERATING PARAMETERS", [0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], Copy.ReceiveCopyResultsCommand.OperatingParameters, sa: 0x03);
        Add("RECEIVE COPY FAILURE DETAILS(LID1)", [0x84, 0x04, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], Copy.ReceiveCopyResultsCommand.FailedSegmentDetails, sa: 0x04);
        // REPORT LUNS is answered by the target (it needs the LUN map), but validated from here.
        Add("REPORT LUNS", [0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], static (_, _) => default, U);
    }

    private static void Add(string name, byte[] usage, CommandExecutor execute, CommandFlags flags = CommandFlags.None, RangeLayout range = RangeLayout.None, int sa = -1)
    {
        var info = new CommandInfo(name, usage, execute, flags, range) { ServiceAction = sa };
        all.Add(info);
        if (sa < 0)
        {
            ByOpcode[usage[0]] = info;
        }
        else
        {
            HasServiceActions[usage[0]] = true;
            ByServiceAction[usage[0] << 8 | sa] = info;
        }
    }

    /// <summary>The command a CDB names, or null when the emulation does not know it.</summary>
    public static CommandInfo? Find(ReadOnlySpan<byte> cdb)
    {
        if (cdb.IsEmpty)
            return null;
        var op = cdb[0];
        if (!HasServiceActions[op])
            return ByOpcode[op];
        return cdb.Length > 1 && ByServiceAction.TryGetValue(op << 8 | (cdb[1] & 0x1F), out var info) ? info : null;
    }

    /// <summary>Whether some service action of this opcode is supported (an unknown service action is then an invalid field, not an invalid opcode).</summary>
    public static bool OpcodeHasServiceActions(byte opcode) => HasServiceActions[opcode];
}
