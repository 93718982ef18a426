using HandlerRuntime.Sdk;
using HandlerRuntime.Scsi.Commands;
using HandlerRuntime.Scsi.Reservations;

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
    /// <summary>Runs alone in the task set, like an ORDERED task: atomic against every other command (COMPARE AND WRITE, ORWRITE).</summary>
    Exclusive = 16,
    /// <summary>
    /// May run on the fabric's network thread when the LU's device is non-blocking
    /// (<see cref="DeviceCapabilities.NonBlocking"/>): plain READ and WRITE, which go straight
    /// to one device call. Everything else may emulate, lock or wait, and runs from the pool.
    /// </summary>
    MayRunInline = 32,
    /// <summary>Answered in the ALUA standby state (SPC-4 5.15.2.4.5).</summary>
    AluaStandby = 64,
    /// <summary>Answered in the ALUA unavailable state, and so in standby too (SPC-4 5.15.2.4.6).</summary>
    AluaUnavailable = 128 | AluaStandby,
    /// <summary>Answered in every ALUA state, transitioning included (SPC-4 5.15.2.4.7).</summary>
    AluaAnyState = 256 | AluaUnavailable,
}

/// <summary>
/// One supported command. <see cref="Usage"/> is the CDB usage data of REPORT SUPPORTED
/// OPERATION CODES (SPC-4 6.35): its length is the CDB length, and a bit that is clear
/// there is reserved or unsupported, so the dispatcher refuses a CDB that sets it.
/// One table thus drives both validation and what the LU reports. <see cref="Reservation"/>
/// says how the command fares under reservations held by other I_T nexuses.
/// </summary>
internal sealed record CommandInfo(string Name, byte[] Usage, CommandExecutor Execute, ReservationRule Reservation, CommandFlags Flags = CommandFlags.None, RangeLayout Range = RangeLayout.None)
{
    public byte Opcode => Usage[0];

    /// <summary>How the CDB says how many bytes of data-out the command carries (see <see cref="TransferLength"/>).</summary>
    public DataOut DataOut { get; init; }

    /// <summary>The service action for opcodes that have them, else -1.</summary>
    public int ServiceAction { get; init; } = -1;

    /// <summary>
    /// Whether an LU offers the command at all (ZBC only on zoned devices, UNMAP only where the
    /// handler can deallocate...). Elsewhere it is an unknown opcode, and REPORT SUPPORTED
    /// OPERATION CODES leaves it out. Null: every LU.
    /// </summary>
    public Func<ScsiLun, bool>? Available { get; init; }

    public bool IsAvailableOn(ScsiLun lun) => Available is null || Available(lun);
}

/// <summary>How a CDB gives the length of its data-out.</summary>
internal enum DataOutRule : byte
{
    /// <summary>Not said by the table: no data-out is expected, and a fabric goes by the initiator's expected length.</summary>
    Unknown,
    /// <summary>None: the command takes no data-out (RESERVE(6)).</summary>
    None,
    /// <summary>The range layout's transfer length, in logical blocks (WRITE, ORWRITE, WRITE ATOMIC).</summary>
    Blocks,
    /// <summary>Twice the transfer length: the verify data, then the write data (COMPARE AND WRITE).</summary>
    TwiceBlocks,
    /// <summary>One logical block (WRITE SAME(10)).</summary>
    OneBlock,
    /// <summary>One logical block unless NDOB (byte 1 bit 0) says there is none (WRITE SAME(16)).</summary>
    OneBlockUnlessNdob,
    /// <summary>By BYTCHK (byte 1 bits 2-1): none, the transfer length in blocks, or one block (VERIFY).</summary>
    ByteCheck,
    /// <summary>A parameter list length field of the CDB, in bytes.</summary>
    ParameterList,
}

/// <summary>A command's data-out rule; for <see cref="DataOutRule.ParameterList"/> where the length field sits.</summary>
internal readonly record struct DataOut(DataOutRule Rule, byte LengthAt = 0, byte LengthWidth = 0)
{
    public static readonly DataOut Blocks = new(DataOutRule.Blocks);

    /// <summary>A parameter list length of <paramref name="width"/> bytes at CDB byte <paramref name="at"/>.</summary>
    public static DataOut List(byte at, byte width) => new(DataOutRule.ParameterList, at, width);
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
        const CommandFlags Inline = CommandFlags.MayRunInline;
        // What an LU answers through a port group that is not active (SPC-4 5.15.2.4.4-7): each state's list includes the next one's.
        const CommandFlags Standby = CommandFlags.AluaStandby, Unavailable = CommandFlags.AluaUnavailable, AnyState = CommandFlags.AluaAnyState;
        // Reservation classes follow SPC-4 5.13.1 and SBC-3 4.17 ("commands that are allowed in the presence of various reservations").
        var free = ReservationRule.Unrestricted;
        var allowed = ReservationRule.PersistentlyAllowed;
        var read = ReservationRule.Read;
        var write = ReservationRule.Write;

        Add("TEST UNIT READY", [0x00, 0, 0, 0, 0, 0], BasicCommands.TestUnitReady, allowed);
        Add("REQUEST SENSE", [0x03, 0x01, 0, 0, 0xFF, 0], BasicCommands.RequestSense, free, U | AnyState);
        Add("INQUIRY", [0x12, 0x01, 0xFF, 0xFF, 0xFF, 0], InquiryCommand.Execute, free, U | AnyState);
        Add("MODE SELECT(6)", [0x15, 0x11, 0, 0, 0xFF, 0], ModeCommands.ModeSelect6, write, Standby, dataOut: DataOut.List(4, 1));
        Add("MODE SENSE(6)", [0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0], ModeCommands.ModeSense6, read, Standby);
        Add("MODE SELECT(10)", [0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], ModeCommands.ModeSelect10, write, Standby, dataOut: DataOut.List(7, 2));
        Add("MODE SENSE(10)", [0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0], ModeCommands.ModeSense10, read, Standby);
        Add("READ CAPACITY(10)", [0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0], CapacityCommands.ReadCapacity10, allowed, M);
        Add("READ CAPACITY(16)", [0x9E, 0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0], CapacityCommands.ReadCapacity16, allowed, M, sa: 0x10);

        Add("READ(6)", [0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0], MediumCommands.Read, read, M | Inline | CommandFlags.ZeroMeans256, RangeLayout.Cdb6);
        Add("READ(10)", [0x28, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.Read, read, M | Inline, RangeLayout.Cdb10);
        Add("READ(12)", [0xA8, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.Read, read, M | Inline, RangeLayout.Cdb12);
        Add("READ(16)", [0x88, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.Read, read, M | Inline, RangeLayout.Cdb16);
        Add("WRITE(6)", [0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0], MediumCommands.Write, write, W | Inline | CommandFlags.ZeroMeans256, RangeLayout.Cdb6, dataOut: DataOut.Blocks);
        Add("WRITE(10)", [0x2A, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.Write, write, W | Inline, RangeLayout.Cdb10, dataOut: DataOut.Blocks);
        Add("WRITE(12)", [0xAA, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.Write, write, W | Inline, RangeLayout.Cdb12, dataOut: DataOut.Blocks);
        Add("WRITE(16)", [0x8A, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.Write, write, W | Inline, RangeLayout.Cdb16, dataOut: DataOut.Blocks);
        Add("VERIFY(10)", [0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.Verify, read, M, RangeLayout.Cdb10, dataOut: new(DataOutRule.ByteCheck));
        Add("VERIFY(12)", [0xAF, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.Verify, read, M, RangeLayout.Cdb12, dataOut: new(DataOutRule.ByteCheck));
        Add("VERIFY(16)", [0x8F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.Verify, read, M, RangeLayout.Cdb16, dataOut: new(DataOutRule.ByteCheck));
        Add("SYNCHRONIZE CACHE(10)", [0x35, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.SynchronizeCache, write, M, RangeLayout.Cdb10);
        Add("SYNCHRONIZE CACHE(16)", [0x91, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.SynchronizeCache, write, M, RangeLayout.Cdb16);
        Add("WRITE SAME(10)", [0x41, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.WriteSame, write, W, RangeLayout.Cdb10, dataOut: new(DataOutRule.OneBlock));
        Add("WRITE SAME(16)", [0x93, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.WriteSame, write, W, RangeLayout.Cdb16, dataOut: new(DataOutRule.OneBlockUnlessNdob));
        Add("UNMAP", [0x42, 0, 0, 0, 0, 0, 0x3F, 0xFF, 0xFF, 0], MediumCommands.Unmap, write, W, dataOut: DataOut.List(7, 2), available: l => (l.Capabilities & DeviceCapabilities.Unmap) != 0);
        // EXTENDED COPY(LID1) and RECEIVE COPY RESULTS (runtime/Scsi/Copy). EXTENDED COPY is not
        // flagged Writes: this LU may be only the copy source; each destination's protection is
        // checked by the copy itself.
        Add("EXTENDED COPY(LID1)", [0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], Copy.ExtendedCopyCommand.Execute, write, M, sa: 0x00, dataOut: DataOut.List(10, 4));
        Add("RECEIVE COPY STATUS(LID1)", [0x84, 0x00, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], Copy.ReceiveCopyResultsCommand.CopyStatus, read, sa: 0x00);
        Add("RECEIVE COPY OPERATING PARAMETERS", [0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], Copy.ReceiveCopyResultsCommand.OperatingParameters, read, sa: 0x03);
        Add("RECEIVE COPY FAILURE DETAILS(LID1)", [0x84, 0x04, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], Copy.ReceiveCopyResultsCommand.FailedSegmentDetails, read, sa: 0x04);
        // REPORT LUNS is answered by the target (it needs the LUN map), but validated from here.
        Add("REPORT LUNS", [0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], static (_, _) => default, free, U | AnyState);

        Add("WRITE AND VERIFY(10)", [0x2E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.WriteAndVerify, write, W, RangeLayout.Cdb10, dataOut: DataOut.Blocks);
        Add("WRITE AND VERIFY(12)", [0xAE, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.WriteAndVerify, write, W, RangeLayout.Cdb12, dataOut: DataOut.Blocks);
        Add("WRITE AND VERIFY(16)", [0x8E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.WriteAndVerify, write, W, RangeLayout.Cdb16, dataOut: DataOut.Blocks);
        Add("COMPARE AND WRITE", [0x89, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x1F, 0], AtomicCommands.CompareAndWrite, write, W | CommandFlags.Exclusive, RangeLayout.CompareAndWrite, dataOut: new(DataOutRule.TwiceBlocks));
        Add("ORWRITE(16)", [0x8B, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], AtomicCommands.OrWrite, write, W | CommandFlags.Exclusive, RangeLayout.Cdb16, dataOut: DataOut.Blocks);
        Add("WRITE ATOMIC(16)", [0x9C, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0x3F, 0], AtomicCommands.WriteAtomic, write, W | CommandFlags.Exclusive, RangeLayout.WriteAtomic16, dataOut: DataOut.Blocks,
            available: l => l.AtomicJournal is not null);
        Add("PRE-FETCH(10)", [0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0], MediumCommands.PreFetch, read, M, RangeLayout.Cdb10);
        Add("PRE-FETCH(16)", [0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0], MediumCommands.PreFetch, read, M, RangeLayout.Cdb16);
        Add("GET LBA STATUS", [0x9E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], ProvisioningCommands.GetLbaStatus, read, M, RangeLayout.LbaOnly16, sa: 0x12);
        Add("READ DEFECT DATA(10)", [0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0], BasicCommands.ReadDefectData, read, M);
        Add("READ DEFECT DATA(12)", [0xB7, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], BasicCommands.ReadDefectData, read, M);
        // START STOP UNIT and PREVENT ALLOW conflict as writes: the CDB-field exceptions of SPC-4 5.13.1 (START=1, PREVENT=0) are not taken.
        Add("START STOP UNIT", [0x1B, 0x01, 0, 0x0F, 0xF7, 0], MediumStateCommands.StartStopUnit, write);
        Add("PREVENT ALLOW MEDIUM REMOVAL", [0x1E, 0, 0, 0, 0x03, 0], MediumStateCommands.PreventAllowMediumRemoval, write);
        // SANITIZE: byte 1 holds IMMED and AUSE beside the service action. A write for reservations and protection.
        Add("SANITIZE(OVERWRITE)", [0x48, 0xA1, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], SanitizeCommand.Overwrite, write, W, sa: 0x01, dataOut: DataOut.List(7, 2));
        Add("SANITIZE(BLOCK ERASE)", [0x48, 0xA2, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], SanitizeCommand.BlockErase, write, W, sa: 0x02, dataOut: DataOut.List(7, 2));
        Add("SANITIZE(CRYPTOGRAPHIC ERASE)", [0x48, 0xA3, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], SanitizeCommand.CryptoErase, write, W, sa: 0x03, dataOut: DataOut.List(7, 2),
            available: static l => l.Device.CryptoErase is not null);
        Add("SANITIZE(EXIT FAILURE MODE)", [0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], SanitizeCommand.ExitFailureMode, write, CommandFlags.Writes, sa: 0x1F, dataOut: DataOut.List(7, 2));
        Add("REPORT TARGET PORT GROUPS", [0xA3, 0x2A, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], TargetPortGroupCommands.ReportTargetPortGroups, allowed, AnyState, sa: 0x0A);
        Add("SET TARGET PORT GROUPS", [0xA4, 0x0A, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], TargetPortGroupCommands.SetTargetPortGroups, write, Unavailable, sa: 0x0A, dataOut: DataOut.List(6, 4));
        Add("REPORT SUPPORTED OPERATION CODES", [0xA3, 0x0C, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], SupportedCommands.ReportOperationCodes, allowed, Unavailable, sa: 0x0C);
        Add("REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS", [0xA3, 0x0D, 0x80, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], SupportedCommands.ReportTaskManagementFunctions, allowed, Unavailable, sa: 0x0D);
        // ---- zoned block commands (ZBC-1 5.2-5.6), only on zoned LUNs ----
        static bool Zoned(ScsiLun l) => l.Device.Zoned is not null;
        Add("REPORT ZONES", [0x95, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xBF, 0], ZonedCommands.ReportZones, read, M, sa: 0x00, available: Zoned);
        Add("CLOSE ZONE", [0x94, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0x01, 0], ZonedCommands.ManageZone, write, W, sa: 0x01, available: Zoned);
        Add("FINISH ZONE", [0x94, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0x01, 0], ZonedCommands.ManageZone, write, W, sa: 0x02, available: Zoned);
        Add("OPEN ZONE", [0x94, 0x03, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0x01, 0], ZonedCommands.ManageZone, write, W, sa: 0x03, available: Zoned);
        Add("RESET WRITE POINTER", [0x94, 0x04, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0x01, 0], ZonedCommands.ManageZone, write, W, sa: 0x04, available: Zoned);

        // Reservations. PERSISTENT RESERVE IN/OUT have one entry per service action (REPORT SUPPORTED
        // OPERATION CODES lists them so); RESERVE(10)/RELEASE(10) without 3RDPTY or LONGID carry no data.
        Add("PERSISTENT RESERVE IN(READ KEYS)", [0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], ReservationCommands.ReadKeys, ReservationRule.PersistentReserveIn, Standby, sa: 0x00);
        Add("PERSISTENT RESERVE IN(READ RESERVATION)", [0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], ReservationCommands.ReadReservation, ReservationRule.PersistentReserveIn, Standby, sa: 0x01);
        Add("PERSISTENT RESERVE IN(REPORT CAPABILITIES)", [0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], ReservationCommands.ReportCapabilities, ReservationRule.PersistentReserveIn, Standby, sa: 0x02);
        Add("PERSISTENT RESERVE IN(READ FULL STATUS)", [0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], ReservationCommands.ReadFullStatus, ReservationRule.PersistentReserveIn, Standby, sa: 0x03);
        string[] prout = ["REGISTER", "RESERVE", "RELEASE", "CLEAR", "PREEMPT", "PREEMPT AND ABORT", "REGISTER AND IGNORE EXISTING KEY", "REGISTER AND MOVE"];
        for (var sa = 0; sa < prout.Length; sa++)
            Add($"PERSISTENT RESERVE OUT({prout[sa]})", [0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0], ReservationCommands.PersistentReserveOut, ReservationRule.PersistentReserveOut, Standby, sa: sa, dataOut: DataOut.List(5, 4));
        Add("RESERVE(6)", [0x16, 0, 0, 0, 0, 0], ReservationCommands.Reserve, ReservationRule.Spc2ReserveRelease, dataOut: new(DataOutRule.None));
        Add("RELEASE(6)", [0x17, 0, 0, 0, 0, 0], ReservationCommands.Release, ReservationRule.Spc2ReserveRelease);
        Add("RESERVE(10)", [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0], ReservationCommands.Reserve, ReservationRule.Spc2ReserveRelease, dataOut: DataOut.List(7, 2));
        Add("RELEASE(10)", [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0], ReservationCommands.Release, ReservationRule.Spc2ReserveRelease);
    }

    private static void Add(string name, byte[] usage, CommandExecutor execute, ReservationRule reservation, CommandFlags flags = CommandFlags.None,
        RangeLayout range = RangeLayout.None, int sa = -1, Func<ScsiLun, bool>? available = null, DataOut dataOut = default)
    {
        var info = new CommandInfo(name, usage, execute, reservation, flags, range) { ServiceAction = sa, Available = available, DataOut = dataOut };
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

    /// <summary>Whether <paramref name="lun"/> offers some service action of this opcode.</summary>
    public static bool OffersServiceActionsOf(byte opcode, ScsiLun lun)
        => HasServiceActions[opcode] && all.Any(c => c.Opcode == opcode && c.IsAvailableOn(lun));

    /// <summary>The command with this opcode (and service action, for opcodes that have them), or null.</summary>
    public static CommandInfo? Find(byte opcode, int serviceAction)
        => HasServiceActions[opcode] ? ByServiceAction.GetValueOrDefault(opcode << 8 | serviceAction) : ByOpcode[opcode];
}
