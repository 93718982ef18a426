using System.Buffers.Binary;

namespace HandlerRuntime.Fabrics.Iscsi.Protocol;

/// <summary>
/// Field access on a 48-byte Basic Header Segment (RFC 7143 11.2.1) and the Additional
/// Header Segments after it: the one place that knows where each field lies. Fields every
/// PDU shares are at the top; fields whose place depends on the PDU type are in the nested
/// class of that type, named as RFC 7143 names them. Multi-byte fields are big-endian.
/// </summary>
public static class Bhs
{
    public const int Length = 48;
    public const uint ReservedTag = 0xFFFFFFFF;

    /// <summary>The F (final) bit of byte 1, in every PDU that has one.</summary>
    public const byte FinalFlag = 0x80;

    // ---- where the fields lie (RFC 7143 11.2.1 and the section of each PDU) ----
    private const int OpcodeAt = 0, FlagsAt = 1, TotalAhsLengthAt = 4, DataSegmentLengthAt = 5, LunAt = 8, InitiatorTaskTagAt = 16;
    private const int TargetTransferTagAt = 20;
    private const int CmdSNAt = 24, StatSNAt = 24;       // requests carry CmdSN here, responses StatSN
    private const int ExpCmdSNAt = 28, MaxCmdSNAt = 32;  // responses
    private const byte ImmediateBit = 0x40, OpcodeMask = 0x3F;

    // ---- every PDU ----

    public static Opcode Opcode(ReadOnlySpan<byte> h) => (Opcode)(h[OpcodeAt] & OpcodeMask);
    public static bool Immediate(ReadOnlySpan<byte> h) => (h[OpcodeAt] & ImmediateBit) != 0;
    public static void PutOpcode(Span<byte> h, Opcode opcode) => h[OpcodeAt] = (byte)opcode;

    /// <summary>Byte 1: F and the PDU type's own flags (see the nested classes for their bits).</summary>
    public static byte Flags(ReadOnlySpan<byte> h) => h[FlagsAt];
    public static void PutFlags(Span<byte> h, byte flags) => h[FlagsAt] = flags;
    public static bool Final(ReadOnlySpan<byte> h) => (h[FlagsAt] & FinalFlag) != 0;

    public static int TotalAhsLength(ReadOnlySpan<byte> h) => h[TotalAhsLengthAt] * 4;
    public static int DataSegmentLength(ReadOnlySpan<byte> h) => h[DataSegmentLengthAt] << 16 | h[DataSegmentLengthAt + 1] << 8 | h[DataSegmentLengthAt + 2];

    public static void PutDataSegmentLength(Span<byte> h, int length)
    {
        h[DataSegmentLengthAt] = (byte)(length >> 16);
        h[DataSegmentLengthAt + 1] = (byte)(length >> 8);
        h[DataSegmentLengthAt + 2] = (byte)length;
    }

    /// <summary>The 8-byte LUN field (SAM LUN structure), as the core decodes it.</summary>
    public static ReadOnlySpan<byte> Lun(ReadOnlySpan<byte> h) => h.Slice(LunAt, 8);
    /// <summary>The LUN field as one number, to echo it unchanged (R2T, Data-In, NOP-In).</summary>
    public static ulong LunField(ReadOnlySpan<byte> h) => BinaryPrimitives.ReadUInt64BigEndian(h[LunAt..]);
    public static void PutLunField(Span<byte> h, ulong lun) => BinaryPrimitives.WriteUInt64BigEndian(h[LunAt..], lun);

    public static uint InitiatorTaskTag(ReadOnlySpan<byte> h) => Get32(h, InitiatorTaskTagAt);
    public static void PutInitiatorTaskTag(Span<byte> h, uint itt) => Put32(h, InitiatorTaskTagAt, itt);

    /// <summary>Target Transfer Tag: NOP-Out/NOP-In, Text, R2T, Data-Out and Data-In (RFC 7143 11.7.4, 11.8.3, 11.10.4, 11.18.2).</summary>
    public static uint TargetTransferTag(ReadOnlySpan<byte> h) => Get32(h, TargetTransferTagAt);
    public static void PutTargetTransferTag(Span<byte> h, uint ttt) => Put32(h, TargetTransferTagAt, ttt);

    /// <summary>CmdSN of a request (RFC 7143 11.3.6).</summary>
    public static uint CmdSN(ReadOnlySpan<byte> h) => Get32(h, CmdSNAt);

    /// <summary>StatSN, ExpCmdSN and MaxCmdSN of a response (RFC 7143 11.4.8, 11.4.9).</summary>
    public static void PutStatSN(Span<byte> h, uint statSN) => Put32(h, StatSNAt, statSN);
    public static void PutExpCmdSN(Span<byte> h, uint expCmdSN) => Put32(h, ExpCmdSNAt, expCmdSN);
    public static void PutMaxCmdSN(Span<byte> h, uint maxCmdSN) => Put32(h, MaxCmdSNAt, maxCmdSN);

    public static void PutWindow(Span<byte> h, CmdSNWindow window)
    {
        PutExpCmdSN(h, window.ExpCmdSN);
        PutMaxCmdSN(h, window.MaxCmdSN);
    }

    /// <summary>Bytes of padding after a data segment (to a 4-byte boundary).</summary>
    public static int Padding(int length) => (4 - (length & 3)) & 3;

    /// <summary>Serial number arithmetic (RFC 1982, 32 bits): a &lt; b.</summary>
    public static bool SnLess(uint a, uint b) => a != b && (int)(a - b) < 0;

    private static uint Get32(ReadOnlySpan<byte> h, int at) => BinaryPrimitives.ReadUInt32BigEndian(h[at..]);
    private static ushort Get16(ReadOnlySpan<byte> h, int at) => BinaryPrimitives.ReadUInt16BigEndian(h[at..]);
    private static void Put32(Span<byte> h, int at, uint v) => BinaryPrimitives.WriteUInt32BigEndian(h[at..], v);
    private static void Put16(Span<byte> h, int at, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(h[at..], v);

    // ---- per PDU type ----

    /// <summary>SCSI Command (RFC 7143 11.3).</summary>
    public static class ScsiCommand
    {
        private const byte ReadFlag = 0x40, WriteFlag = 0x20, AttributeMask = 0x07;
        private const int ExpectedDataTransferLengthAt = 20, CdbAt = 32, CdbLength = 16;

        public static bool Read(ReadOnlySpan<byte> h) => (h[FlagsAt] & ReadFlag) != 0;
        public static bool Write(ReadOnlySpan<byte> h) => (h[FlagsAt] & WriteFlag) != 0;
        /// <summary>ATTR: 0 untagged, 1 simple, 2 ordered, 3 head of queue, 4 ACA.</summary>
        public static int Attribute(ReadOnlySpan<byte> h) => h[FlagsAt] & AttributeMask;
        public static uint ExpectedDataTransferLength(ReadOnlySpan<byte> h) => Get32(h, ExpectedDataTransferLengthAt);
        /// <summary>The first 16 CDB bytes; a longer CDB continues in an Extended CDB AHS.</summary>
        public static ReadOnlySpan<byte> Cdb(ReadOnlySpan<byte> h) => h.Slice(CdbAt, CdbLength);
    }

    /// <summary>
    /// An Additional Header Segment (RFC 7143 11.2.1.2): AHSLength, AHSType, then its own
    /// bytes. Accessors take the span that starts at the AHS.
    /// </summary>
    public static class Ahs
    {
        public const byte ExtendedCdbType = 1;
        public const byte BidirectionalReadLengthType = 2;
        /// <summary>AHSLength of the Bidirectional Read Expected Data Transfer Length AHS (RFC 7143 11.3.1.4).</summary>
        public const int BidirectionalReadAhsLength = 5;
        private const int LengthAt = 0, TypeAt = 2, SpecificAt = 3;
        private const int ExtendedCdbAt = 4;         // after a reserved byte
        private const int BidirectionalReadLengthAt = 4;

        /// <summary>AHSLength: the bytes after AHSType, the reserved byte included, padding excluded.</summary>
        public static int Length(ReadOnlySpan<byte> ahs) => Get16(ahs, LengthAt);
        public static byte Type(ReadOnlySpan<byte> ahs) => ahs[TypeAt];
        /// <summary>The bytes this AHS occupies: its fixed part and AHSLength (without padding).</summary>
        public static int Size(int length) => SpecificAt + length;
        /// <summary>Where the next AHS starts: the size padded to 4 bytes.</summary>
        public static int PaddedSize(int length) => (Size(length) + 3) & ~3;
        /// <summary>CDB bytes 16 and on (RFC 7143 11.3.1.3), of an AHS whose AHSLength is <paramref name="length"/>.</summary>
        public static ReadOnlySpan<byte> ExtendedCdb(ReadOnlySpan<byte> ahs, int length) => ahs.Slice(ExtendedCdbAt, length - 1);
        public static uint BidirectionalReadLength(ReadOnlySpan<byte> ahs) => Get32(ahs, BidirectionalReadLengthAt);
    }

    /// <summary>SCSI Response (RFC 7143 11.4); byte 1 carries the <see cref="ResidualFlags"/>.</summary>
    public static class ScsiResponse
    {
        private const int ResponseAt = 2, StatusAt = 3, ExpDataSNAt = 36, BidirectionalReadResidualCountAt = 40, ResidualCountAt = 44;
        /// <summary>The data segment starts with SenseLength, 2 bytes, then the sense data (RFC 7143 11.4.7.2).</summary>
        public const int SenseLengthSize = 2;
        /// <summary>Response: Command Completed at Target.</summary>
        public const byte CommandCompleted = 0x00;

        public static void PutResponse(Span<byte> h, byte response) => h[ResponseAt] = response;
        public static void PutStatus(Span<byte> h, byte status) => h[StatusAt] = status;
        public static void PutExpDataSN(Span<byte> h, uint expDataSN) => Put32(h, ExpDataSNAt, expDataSN);
        public static void PutBidirectionalReadResidualCount(Span<byte> h, uint count) => Put32(h, BidirectionalReadResidualCountAt, count);
        public static void PutResidualCount(Span<byte> h, uint count) => Put32(h, ResidualCountAt, count);
        public static void PutSenseLength(Span<byte> segment, ushort length) => Put16(segment, 0, length);
    }

    /// <summary>SCSI Data-In (RFC 7143 11.7); with S set, byte 1 also carries O and U of <see cref="ResidualFlags"/>.</summary>
    public static class DataIn
    {
        /// <summary>S: the PDU carries the command's status.</summary>
        public const byte StatusFlag = 0x01;
        private const int StatusAt = 3, DataSNAt = 36, BufferOffsetAt = 40, ResidualCountAt = 44;

        public static void PutStatus(Span<byte> h, byte status) => h[StatusAt] = status;
        public static void PutDataSN(Span<byte> h, uint dataSN) => Put32(h, DataSNAt, dataSN);
        public static void PutBufferOffset(Span<byte> h, uint offset) => Put32(h, BufferOffsetAt, offset);
        public static void PutResidualCount(Span<byte> h, uint count) => Put32(h, ResidualCountAt, count);
    }

    /// <summary>SCSI Data-Out (RFC 7143 11.7).</summary>
    public static class DataOut
    {
        private const int DataSNAt = 36, BufferOffsetAt = 40;

        public static uint DataSN(ReadOnlySpan<byte> h) => Get32(h, DataSNAt);
        public static uint BufferOffset(ReadOnlySpan<byte> h) => Get32(h, BufferOffsetAt);
    }

    /// <summary>Ready To Transfer (RFC 7143 11.8).</summary>
    public static class R2T
    {
        private const int R2TSNAt = 36, BufferOffsetAt = 40, DesiredDataTransferLengthAt = 44;

        public static void PutR2TSN(Span<byte> h, uint r2tsn) => Put32(h, R2TSNAt, r2tsn);
        public static void PutBufferOffset(Span<byte> h, uint offset) => Put32(h, BufferOffsetAt, offset);
        public static void PutDesiredDataTransferLength(Span<byte> h, uint length) => Put32(h, DesiredDataTransferLengthAt, length);
    }

    /// <summary>Text Request and Response (RFC 7143 11.10, 11.11).</summary>
    public static class Text
    {
        /// <summary>C: the text continues in the next PDU.</summary>
        public const byte ContinueFlag = 0x40;

        public static bool Continue(ReadOnlySpan<byte> h) => (h[FlagsAt] & ContinueFlag) != 0;
    }

    /// <summary>Logout Request and Response (RFC 7143 11.14, 11.15).</summary>
    public static class Logout
    {
        private const byte ReasonMask = 0x7F;
        private const int CidAt = 20, ResponseAt = 2, Time2WaitAt = 40, Time2RetainAt = 42;

        public static int ReasonCode(ReadOnlySpan<byte> h) => h[FlagsAt] & ReasonMask;
        /// <summary>The connection to close (reason 1, 2).</summary>
        public static ushort Cid(ReadOnlySpan<byte> h) => Get16(h, CidAt);
        public static void PutResponse(Span<byte> h, byte response) => h[ResponseAt] = response;
        public static void PutTime2Wait(Span<byte> h, ushort seconds) => Put16(h, Time2WaitAt, seconds);
        public static void PutTime2Retain(Span<byte> h, ushort seconds) => Put16(h, Time2RetainAt, seconds);
    }

    /// <summary>Task Management Function Request and Response (RFC 7143 11.5, 11.6).</summary>
    public static class TaskManagement
    {
        private const byte FunctionMask = 0x7F;
        private const int ReferencedTaskTagAt = 20, ResponseAt = 2;

        public static TaskManagementFunction Function(ReadOnlySpan<byte> h) => (TaskManagementFunction)(h[FlagsAt] & FunctionMask);
        public static uint ReferencedTaskTag(ReadOnlySpan<byte> h) => Get32(h, ReferencedTaskTagAt);
        public static void PutResponse(Span<byte> h, TaskManagementResponse response) => h[ResponseAt] = (byte)response;
    }

    /// <summary>Login Request and Response (RFC 7143 11.12, 11.13).</summary>
    public static class Login
    {
        /// <summary>T: the initiator (or target) wants to move to the next stage.</summary>
        public const byte TransitFlag = 0x80;
        /// <summary>C: the text continues in the next PDU.</summary>
        public const byte ContinueFlag = 0x40;
        private const int CurrentStageShift = 2, StageMask = 3;
        private const int VersionMaxAt = 2, VersionMinAt = 3, VersionActiveAt = 3, IsidAt = 8, IsidLength = 6, TsihAt = 14, CidAt = 20;
        private const int StatusClassAt = 36, StatusDetailAt = 37;

        public static bool Transit(ReadOnlySpan<byte> h) => (h[FlagsAt] & TransitFlag) != 0;
        public static bool Continue(ReadOnlySpan<byte> h) => (h[FlagsAt] & ContinueFlag) != 0;
        /// <summary>CSG: 0 security negotiation, 1 login operational negotiation, 3 full feature phase.</summary>
        public static int CurrentStage(ReadOnlySpan<byte> h) => (h[FlagsAt] >> CurrentStageShift) & StageMask;
        public static int NextStage(ReadOnlySpan<byte> h) => h[FlagsAt] & StageMask;
        public static byte VersionMax(ReadOnlySpan<byte> h) => h[VersionMaxAt];
        public static byte VersionMin(ReadOnlySpan<byte> h) => h[VersionMinAt];

        /// <summary>The 48-bit ISID (RFC 7143 11.12.5).</summary>
        public static ulong Isid(ReadOnlySpan<byte> h)
        {
            ulong v = 0;
            foreach (var b in h.Slice(IsidAt, IsidLength))
                v = v << 8 | b;
            return v;
        }

        public static void PutIsid(Span<byte> h, ulong isid)
        {
            var field = h.Slice(IsidAt, IsidLength);
            for (var i = IsidLength - 1; i >= 0; i--)
            {
                field[i] = (byte)isid;
                isid >>= 8;
            }
        }

        public static ushort Tsih(ReadOnlySpan<byte> h) => Get16(h, TsihAt);
        public static void PutTsih(Span<byte> h, ushort tsih) => Put16(h, TsihAt, tsih);
        public static ushort Cid(ReadOnlySpan<byte> h) => Get16(h, CidAt);

        /// <summary>Byte 1 of a Login Response: T, CSG and (when T) NSG.</summary>
        public static void PutStages(Span<byte> h, bool transit, int currentStage, int nextStage)
            => h[FlagsAt] = (byte)((transit ? TransitFlag : 0) | (currentStage & StageMask) << CurrentStageShift | (transit ? nextStage & StageMask : 0));

        public static void PutVersions(Span<byte> h, byte max, byte active)
        {
            h[VersionMaxAt] = max;
            h[VersionActiveAt] = active;
        }

        /// <summary>Status-Class and Status-Detail (RFC 7143 11.13.5).</summary>
        public static void PutStatus(Span<byte> h, LoginStatus status)
        {
            h[StatusClassAt] = (byte)((ushort)status >> 8);
            h[StatusDetailAt] = (byte)status;
        }
    }

    /// <summary>Reject (RFC 7143 11.17): the rejected PDU's header is its data segment.</summary>
    public static class Reject
    {
        private const int ReasonAt = 2;

        public static void PutReason(Span<byte> h, RejectReason reason) => h[ReasonAt] = (byte)reason;
    }
}

/// <summary>
/// The residual bits of byte 1 of a SCSI Response (RFC 7143 11.4.1); a Data-In with status
/// has O and U at the same places. o and u describe the read part of a bidirectional command,
/// O and U the write part there, else the one transfer.
/// </summary>
[Flags]
public enum ResidualFlags : byte
{
    None = 0,
    /// <summary>U: fewer bytes were transferred than the initiator expected.</summary>
    Underflow = 0x02,
    /// <summary>O: the command had more bytes than the initiator's expected length let through.</summary>
    Overflow = 0x04,
    /// <summary>u: the read part of a bidirectional command transferred fewer bytes than expected.</summary>
    BidirectionalReadUnderflow = 0x08,
    /// <summary>o: the read part of a bidirectional command had more bytes than expected.</summary>
    BidirectionalReadOverflow = 0x10,
}
