using System.Buffers.Binary;

namespace HandlerRuntime.Scsi;

/// <summary>Big-endian field access for CDBs and parameter data.</summary>
internal static class Cdb
{
    /// <summary>The number of the highest bit set in <paramref name="bits"/> (the bit a field pointer names).</summary>
    public static int HighestBit(int bits) => 31 - System.Numerics.BitOperations.LeadingZeroCount((uint)bits);

    public static ushort U16(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt16BigEndian(b[at..]);
    public static uint U24(ReadOnlySpan<byte> b, int at) => (uint)(b[at] << 16 | b[at + 1] << 8 | b[at + 2]);
    public static uint U32(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt32BigEndian(b[at..]);
    public static ulong U64(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt64BigEndian(b[at..]);

    public static void Put16(Span<byte> b, int at, int v) => BinaryPrimitives.WriteUInt16BigEndian(b[at..], (ushort)v);
    public static void Put24(Span<byte> b, int at, int v) { b[at] = (byte)(v >> 16); b[at + 1] = (byte)(v >> 8); b[at + 2] = (byte)v; }
    public static void Put32(Span<byte> b, int at, uint v) => BinaryPrimitives.WriteUInt32BigEndian(b[at..], v);
    public static void Put64(Span<byte> b, int at, ulong v) => BinaryPrimitives.WriteUInt64BigEndian(b[at..], v);

    /// <summary>Writes <paramref name="text"/> as ASCII, space padded to <paramref name="width"/>.</summary>
    public static void PutAscii(Span<byte> b, int at, string text, int width)
    {
        var field = b.Slice(at, width);
        field.Fill((byte)' ');
        for (var i = 0; i < Math.Min(width, text.Length); i++)
            field[i] = text[i] is >= ' ' and <= '~' ? (byte)text[i] : (byte)'?';
    }

    /// <summary>
    /// The logical block address and transfer length of a medium-access CDB laid out
    /// in one of the standard shapes (6, 10, 12 or 16 bytes).
    /// </summary>
    public static (ulong Lba, uint Blocks) Range(ReadOnlySpan<byte> cdb, RangeLayout layout) => layout switch
    {
        RangeLayout.Cdb6 => (U24(cdb, 1) & 0x1F_FFFF, cdb[4]),
        RangeLayout.Cdb10 => (U32(cdb, 2), U16(cdb, 7)),
        RangeLayout.Cdb12 => (U32(cdb, 2), U32(cdb, 6)),
        RangeLayout.Cdb16 => (U64(cdb, 2), U32(cdb, 10)),
        RangeLayout.CompareAndWrite => (U64(cdb, 2), cdb[13]),
        RangeLayout.LbaOnly16 => (U64(cdb, 2), 0),
        RangeLayout.WriteAtomic16 => (U64(cdb, 2), U16(cdb, 12)),
        _ => (0, 0),
    };
}

/// <summary>Where a CDB keeps its LBA and length fields.</summary>
internal enum RangeLayout : byte
{
    None,
    Cdb6,
    Cdb10,
    Cdb12,
    Cdb16,
    /// <summary>COMPARE AND WRITE: 8-byte LBA at 2, one-byte block count at 13.</summary>
    CompareAndWrite,
    /// <summary>An 8-byte starting LBA at 2 and no length (GET LBA STATUS).</summary>
    LbaOnly16,
    /// <summary>WRITE ATOMIC(16): 8-byte LBA at 2, two-byte transfer length at 12.</summary>
    WriteAtomic16,
}
