using System.Buffers.Binary;

namespace HandlerRuntime.Fabrics.Nbd;

/// <summary>
/// The NBD wire format (fixed newstyle negotiation, simple and structured replies), as
/// NetworkBlockDevice/nbd doc/proto.md defines it and shared/design/fabrics-tcmu-nbd.md
/// section 3 summarises it. Every field is big-endian; every offset is named here, so the
/// code that reads and writes messages never carries a bare number.
/// </summary>
internal static class NbdProtocol
{
    public const int DefaultPort = 10809;

    // ---- greeting (server, 18 bytes) ----
    public const ulong NbdMagic = 0x4e42444d41474943;   // "NBDMAGIC"
    public const ulong OptionMagic = 0x49484156454f5054; // "IHAVEOPT": greeting, and the start of every option
    public const int GreetingLength = 18;

    // handshake flags (server, u16) and client flags (u32)
    public const ushort FlagFixedNewstyle = 0x0001;
    public const ushort FlagNoZeroes = 0x0002;
    public const uint ClientFixedNewstyle = 0x0001;
    public const uint ClientNoZeroes = 0x0002;

    // ---- option request header (client, 16 bytes, then the data) ----
    public const int OptionHeaderLength = 16;
    public const int OptionMagicAt = 0;
    public const int OptionCodeAt = 8;
    public const int OptionLengthAt = 12;

    // ---- option reply header (server, 20 bytes, then the data) ----
    public const ulong OptionReplyMagic = 0x0003e889045565a9;
    public const int OptionReplyHeaderLength = 20;
    public const int OptionReplyOptionAt = 8;
    public const int OptionReplyTypeAt = 12;
    public const int OptionReplyLengthAt = 16;

    /// <summary>After EXPORT_NAME: u64 size, u16 transmission flags, then 124 zero bytes unless NO_ZEROES.</summary>
    public const int ExportNameReplyLength = 10;
    public const int ExportNameReplyZeroes = 124;

    // ---- request header (client, 28 bytes; a WRITE's payload follows) ----
    public const uint RequestMagic = 0x25609513;
    public const int RequestHeaderLength = 28;
    public const int RequestMagicAt = 0;
    public const int RequestFlagsAt = 4;
    public const int RequestTypeAt = 6;
    public const int RequestCookieAt = 8;
    public const int RequestOffsetAt = 16;
    public const int RequestLengthAt = 24;

    // ---- simple reply (server, 16 bytes; a successful READ's data follows) ----
    public const uint SimpleReplyMagic = 0x67446698;
    public const int SimpleReplyLength = 16;
    public const int SimpleReplyErrorAt = 4;
    public const int SimpleReplyCookieAt = 8;

    // ---- structured reply chunk (server, 20-byte header, then the payload) ----
    public const uint StructuredReplyMagic = 0x668e33ef;
    public const int ChunkHeaderLength = 20;
    public const int ChunkFlagsAt = 4;
    public const int ChunkTypeAt = 6;
    public const int ChunkCookieAt = 8;
    public const int ChunkLengthAt = 16;
    public const ushort ReplyFlagDone = 0x0001;

    /// <summary>OFFSET_DATA payload: u64 offset, then the data.</summary>
    public const int OffsetDataPrefix = 8;
    /// <summary>OFFSET_HOLE payload: u64 offset, u32 length.</summary>
    public const int OffsetHoleLength = 12;
    /// <summary>ERROR payload: u32 error, u16 message length (the message follows).</summary>
    public const int ErrorChunkLength = 6;
    /// <summary>BLOCK_STATUS payload: u32 context id, then (u32 length, u32 flags) per extent.</summary>
    public const int BlockStatusPrefix = 4;
    public const int ExtentLength = 8;

    /// <summary>The size of a string (export name, message) the protocol allows.</summary>
    public const int MaxStringLength = 4096;

    public static void Put16(Span<byte> d, int at, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(d[at..], v);
    public static void Put32(Span<byte> d, int at, uint v) => BinaryPrimitives.WriteUInt32BigEndian(d[at..], v);
    public static void Put64(Span<byte> d, int at, ulong v) => BinaryPrimitives.WriteUInt64BigEndian(d[at..], v);
    public static ushort U16(ReadOnlySpan<byte> d, int at) => BinaryPrimitives.ReadUInt16BigEndian(d[at..]);
    public static uint U32(ReadOnlySpan<byte> d, int at) => BinaryPrimitives.ReadUInt32BigEndian(d[at..]);
    public static ulong U64(ReadOnlySpan<byte> d, int at) => BinaryPrimitives.ReadUInt64BigEndian(d[at..]);
}

/// <summary>Options a client sends during negotiation.</summary>
internal enum NbdOption : uint
{
    ExportName = 1,
    Abort = 2,
    List = 3,
    PeekExport = 4,
    StartTls = 5,
    Info = 6,
    Go = 7,
    StructuredReply = 8,
    ListMetaContext = 9,
    SetMetaContext = 10,
    ExtendedHeaders = 11,
}

/// <summary>Option reply types; errors have bit 31 set.</summary>
internal enum NbdReply : uint
{
    Ack = 1,
    Server = 2,
    Info = 3,
    MetaContext = 4,
    ErrUnsupported = 0x80000001,
    ErrPolicy = 0x80000002,
    ErrInvalid = 0x80000003,
    ErrPlatform = 0x80000004,
    ErrTlsRequired = 0x80000005,
    ErrUnknown = 0x80000006,
    ErrShutdown = 0x80000007,
    ErrBlockSizeRequired = 0x80000008,
    ErrTooBig = 0x80000009,
}

/// <summary>NBD_REP_INFO types (the u16 at the start of the reply data).</summary>
internal enum NbdInfo : ushort
{
    /// <summary>u64 size, u16 transmission flags (reply length 12).</summary>
    Export = 0,
    /// <summary>The canonical export name.</summary>
    Name = 1,
    /// <summary>Text for humans.</summary>
    Description = 2,
    /// <summary>u32 minimum, u32 preferred, u32 maximum payload (reply length 14).</summary>
    BlockSize = 3,
}

/// <summary>Transmission flags (u16), sent in INFO_EXPORT or after EXPORT_NAME.</summary>
[Flags]
internal enum NbdTransmissionFlags : ushort
{
    HasFlags = 0x0001,
    ReadOnly = 0x0002,
    SendFlush = 0x0004,
    SendFua = 0x0008,
    Rotational = 0x0010,
    SendTrim = 0x0020,
    SendWriteZeroes = 0x0040,
    SendDf = 0x0080,
    CanMultiConn = 0x0100,
    SendResize = 0x0200,
    SendCache = 0x0400,
    SendFastZero = 0x0800,
}

/// <summary>Request types.</summary>
internal enum NbdCommand : ushort
{
    Read = 0,
    Write = 1,
    Disconnect = 2,
    Flush = 3,
    Trim = 4,
    Cache = 5,
    WriteZeroes = 6,
    BlockStatus = 7,
}

/// <summary>Request flags (u16).</summary>
[Flags]
internal enum NbdCommandFlags : ushort
{
    None = 0,
    Fua = 0x0001,
    NoHole = 0x0002,
    DontFragment = 0x0004,
    RequestOne = 0x0008,
    FastZero = 0x0010,
    Known = Fua | NoHole | DontFragment | RequestOne | FastZero,
}

/// <summary>Structured reply chunk types.</summary>
internal enum NbdChunk : ushort
{
    None = 0,
    OffsetData = 1,
    OffsetHole = 2,
    BlockStatus = 5,
    Error = 0x8001,
    ErrorOffset = 0x8002,
}

/// <summary>NBD error values: the protocol's own numbers, not the host's errno.</summary>
internal static class NbdError
{
    public const uint None = 0;
    public const uint Perm = 1;
    public const uint Io = 5;
    public const uint NoMemory = 12;
    public const uint Invalid = 22;
    public const uint NoSpace = 28;
    public const uint Overflow = 75;
    public const uint NotSupported = 95;
    public const uint Shutdown = 108;

    public static string Name(uint error) => error switch
    {
        None => "ok",
        Perm => "EPERM",
        Io => "EIO",
        NoMemory => "ENOMEM",
        Invalid => "EINVAL",
        NoSpace => "ENOSPC",
        Overflow => "EOVERFLOW",
        NotSupported => "ENOTSUP",
        Shutdown => "ESHUTDOWN",
        _ => $"error {error}",
    };
}

/// <summary>The one metadata context this server offers.</summary>
internal static class NbdMetaContext
{
    public const string BaseAllocation = "base:allocation";
    /// <summary>The id SET_META_CONTEXT gives base:allocation (any value; 0 is reserved for LIST's replies).</summary>
    public const uint BaseAllocationId = 1;
    public const uint StateHole = 0x1;
    public const uint StateZero = 0x2;
}
