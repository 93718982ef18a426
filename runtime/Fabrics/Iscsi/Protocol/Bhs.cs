using System.Buffers.Binary;

namespace HandlerRuntime.Fabrics.Iscsi.Protocol;

/// <summary>
/// Field access on a 48-byte Basic Header Segment (RFC 7143 11.2.1). Offsets are the
/// standard's; multi-byte fields are big-endian.
/// </summary>
public static class Bhs
{
    public const int Length = 48;
    public const uint ReservedTag = 0xFFFFFFFF;

    // byte 0
    public static Opcode Opcode(ReadOnlySpan<byte> h) => (Opcode)(h[0] & 0x3F);
    public static bool Immediate(ReadOnlySpan<byte> h) => (h[0] & 0x40) != 0;
    // byte 1
    public static bool Final(ReadOnlySpan<byte> h) => (h[1] & 0x80) != 0;
    public static int TotalAhsLength(ReadOnlySpan<byte> h) => h[4] * 4;
    public static int DataSegmentLength(ReadOnlySpan<byte> h) => h[5] << 16 | h[6] << 8 | h[7];
    public static ReadOnlySpan<byte> Lun(ReadOnlySpan<byte> h) => h.Slice(8, 8);
    public static uint InitiatorTaskTag(ReadOnlySpan<byte> h) => U32(h, 16);
    public static uint U32(ReadOnlySpan<byte> h, int at) => BinaryPrimitives.ReadUInt32BigEndian(h[at..]);
    public static ushort U16(ReadOnlySpan<byte> h, int at) => BinaryPrimitives.ReadUInt16BigEndian(h[at..]);

    public static void Put32(Span<byte> h, int at, uint v) => BinaryPrimitives.WriteUInt32BigEndian(h[at..], v);
    public static void Put16(Span<byte> h, int at, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(h[at..], v);

    public static void PutDataSegmentLength(Span<byte> h, int length)
    {
        h[5] = (byte)(length >> 16);
        h[6] = (byte)(length >> 8);
        h[7] = (byte)length;
    }

    /// <summary>Bytes of padding after a data segment (to a 4-byte boundary).</summary>
    public static int Padding(int length) => (4 - (length & 3)) & 3;

    /// <summary>Serial number arithmetic (RFC 1982, 32 bits): a &lt; b.</summary>
    public static bool SnLess(uint a, uint b) => a != b && (int)(a - b) < 0;
}
