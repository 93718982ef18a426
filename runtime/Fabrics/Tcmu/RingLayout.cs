namespace HandlerRuntime.Fabrics.Tcmu;

// The shared-memory layout of include/uapi/linux/target_core_user.h (TCMU mailbox version 2),
// host-endian, with the byte offsets of the packed structs as compiled on x86-64
// (shared/design/fabrics-tcmu-nbd.md section 1). The mapping holds no pointers: every address
// in it is an offset from the start of the mapping.

/// <summary>struct tcmu_mailbox: 128 bytes at offset 0 of the mapping.</summary>
internal static class Mailbox
{
    public const int Version = 0;    // u16
    public const int Flags = 2;      // u16: capabilities
    public const int CmdrOff = 4;    // u32: ring offset from map start
    public const int CmdrSize = 8;   // u32: ring size in bytes
    public const int CmdHead = 12;   // u32: producer index, written by the kernel
    public const int CmdTail = 64;   // u32: completion index, written by userspace (its own cache line)
    public const int Size = 128;

    public const ushort SupportedVersion = 2;

    public const ushort CapOutOfOrderCompletion = 0x1;
    public const ushort CapReadLen = 0x2;
    public const ushort CapTmr = 0x4;
    public const ushort CapKeepBuf = 0x8;
}

/// <summary>struct tcmu_cmd_entry_hdr: 8 bytes at the start of every ring entry.</summary>
internal static class EntryHeader
{
    public const int LenOp = 0;      // u32: length (multiple of 8) | opcode in the low 3 bits
    public const int CmdId = 4;      // u16
    public const int KernelFlags = 6; // u8
    public const int UserFlags = 7;  // u8
    public const int Size = 8;

    public const uint OpMask = 0x7;
    public const int AlignSize = 8;

    public const byte OpPad = 0;
    public const byte OpCmd = 1;
    public const byte OpTmr = 2;

    public const byte UserFlagUnknownOp = 0x1;
    public const byte UserFlagReadLen = 0x2;
    public const byte UserFlagKeepBuf = 0x4;
}

/// <summary>struct tcmu_cmd_entry: the request and the response overlay each other from offset 8.</summary>
internal static class CommandEntry
{
    // request
    public const int IovCount = 8;       // u32: data-out iovecs, or data-in when not bidirectional
    public const int IovBidiCount = 12;  // u32: data-in iovecs that follow, for bidirectional commands
    public const int IovDifCount = 16;   // u32: always 0
    public const int CdbOffset = 24;     // u64: CDB offset from map start
    public const int Iovecs = 48;        // struct iovec[]: { u64 base (offset from map start), u64 length }
    public const int IovecSize = 16;
    public const int IovecLength = 8;    // within one iovec

    // response
    public const int ScsiStatus = 8;     // u8
    public const int ReadLen = 12;       // u32: bytes really read, with UserFlagReadLen
    public const int SenseBuffer = 16;   // 96 bytes
    public const int SenseBufferSize = 96;

    /// <summary>sizeof(struct tcmu_cmd_entry): the kernel never makes a CMD entry's fixed part shorter.</summary>
    public const int MinimumSize = 112;
}

/// <summary>struct tcmu_tmr_entry: a task management notification (tmr_notification=1).</summary>
internal static class TmrEntry
{
    public const int TmrType = 8;    // u8
    public const int CmdCount = 12;  // u32
    public const int CmdIds = 32;    // u16[]: the aborted commands already on the ring

    public const byte Unknown = 0;
    public const byte AbortTask = 1;
    public const byte AbortTaskSet = 2;
    public const byte ClearAca = 3;
    public const byte ClearTaskSet = 4;
    public const byte LunReset = 5;
    public const byte TargetWarmReset = 6;
    public const byte TargetColdReset = 7;
    /// <summary>A pseudo LUN reset caused by PERSISTENT RESERVE OUT (PREEMPT AND ABORT).</summary>
    public const byte LunResetByPersistentReserve = 128;

    public static string Name(byte type) => type switch
    {
        AbortTask => "ABORT TASK",
        AbortTaskSet => "ABORT TASK SET",
        ClearAca => "CLEAR ACA",
        ClearTaskSet => "CLEAR TASK SET",
        LunReset => "LOGICAL UNIT RESET",
        TargetWarmReset => "TARGET WARM RESET",
        TargetColdReset => "TARGET COLD RESET",
        LunResetByPersistentReserve => "LOGICAL UNIT RESET (PREEMPT AND ABORT)",
        _ => $"TMR {type}",
    };
}
