using System.Buffers.Binary;

namespace HandlerRuntime.TestSupport;

/// <summary>CDB builders for tests (SPC-4/SBC-3 layouts).</summary>
public static class Cdbs
{
    /// <summary>FUA in byte 1 of READ/WRITE(10/12/16).</summary>
    public const byte Fua = 0x08;

    public static byte[] TestUnitReady() => [0x00, 0, 0, 0, 0, 0];

    public static byte[] RequestSense(byte alloc = 252, bool descriptor = false) => [0x03, (byte)(descriptor ? 1 : 0), 0, 0, alloc, 0];

    public static byte[] Inquiry(bool evpd = false, byte page = 0, ushort alloc = 255)
        => [0x12, (byte)(evpd ? 1 : 0), page, (byte)(alloc >> 8), (byte)alloc, 0];

    public static byte[] ReadCapacity10() => new byte[10].With(0x25);

    public static byte[] ReadCapacity16(uint alloc = 32)
    {
        var c = new byte[16];
        c[0] = 0x9E; c[1] = 0x10;
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(10), alloc);
        return c;
    }

    public static byte[] Read6(uint lba, byte blocks) => [0x08, (byte)(lba >> 16 & 0x1F), (byte)(lba >> 8), (byte)lba, blocks, 0];
    public static byte[] Write6(uint lba, byte blocks) => [0x0A, (byte)(lba >> 16 & 0x1F), (byte)(lba >> 8), (byte)lba, blocks, 0];

    public static byte[] Read10(uint lba, ushort blocks, byte flags = 0) => Rw10(0x28, lba, blocks, flags);
    public static byte[] Write10(uint lba, ushort blocks, byte flags = 0) => Rw10(0x2A, lba, blocks, flags);
    public static byte[] Verify10(uint lba, ushort blocks, byte flags = 0) => Rw10(0x2F, lba, blocks, flags);
    public static byte[] SyncCache10(uint lba = 0, ushort blocks = 0) => Rw10(0x35, lba, blocks, 0);
    public static byte[] WriteSame10(uint lba, ushort blocks, byte flags = 0) => Rw10(0x41, lba, blocks, flags);

    public static byte[] Read12(uint lba, uint blocks, byte flags = 0) => Rw12(0xA8, lba, blocks, flags);
    public static byte[] Write12(uint lba, uint blocks, byte flags = 0) => Rw12(0xAA, lba, blocks, flags);
    public static byte[] Verify12(uint lba, uint blocks, byte flags = 0) => Rw12(0xAF, lba, blocks, flags);

    public static byte[] Read16(ulong lba, uint blocks, byte flags = 0) => Rw16(0x88, lba, blocks, flags);
    public static byte[] Write16(ulong lba, uint blocks, byte flags = 0) => Rw16(0x8A, lba, blocks, flags);
    public static byte[] Verify16(ulong lba, uint blocks, byte flags = 0) => Rw16(0x8F, lba, blocks, flags);
    public static byte[] SyncCache16(ulong lba = 0, uint blocks = 0) => Rw16(0x91, lba, blocks, 0);
    public static byte[] WriteSame16(ulong lba, uint blocks, byte flags = 0) => Rw16(0x93, lba, blocks, flags);

    public static byte[] Unmap(ushort parameterLength, byte flags = 0)
    {
        var c = new byte[10];
        c[0] = 0x42; c[1] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(c.AsSpan(7), parameterLength);
        return c;
    }

    /// <summary>UNMAP parameter list with the given (lba, blocks) descriptors.</summary>
    public static byte[] UnmapList(params (ulong Lba, uint Blocks)[] ranges)
    {
        var p = new byte[8 + 16 * ranges.Length];
        BinaryPrimitives.WriteUInt16BigEndian(p, (ushort)(p.Length - 2));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)(16 * ranges.Length));
        for (var i = 0; i < ranges.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(p.AsSpan(8 + 16 * i), ranges[i].Lba);
            BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(16 + 16 * i), ranges[i].Blocks);
        }
        return p;
    }

    public static byte[] ModeSense6(byte page, byte pc = 0, byte subpage = 0, byte alloc = 255, bool dbd = false)
        => [0x1A, (byte)(dbd ? 0x08 : 0), (byte)(pc << 6 | page), subpage, alloc, 0];

    public static byte[] ModeSense10(byte page, byte pc = 0, byte subpage = 0, ushort alloc = 1024, bool dbd = false, bool llbaa = false)
        => [0x5A, (byte)((dbd ? 0x08 : 0) | (llbaa ? 0x10 : 0)), (byte)(pc << 6 | page), subpage, 0, 0, 0, (byte)(alloc >> 8), (byte)alloc, 0];

    public static byte[] ModeSelect6(byte length, bool pf = true, bool sp = false)
        => [0x15, (byte)((pf ? 0x10 : 0) | (sp ? 1 : 0)), 0, 0, length, 0];

    public static byte[] ModeSelect10(ushort length, bool pf = true, bool sp = false)
        => [0x55, (byte)((pf ? 0x10 : 0) | (sp ? 1 : 0)), 0, 0, 0, 0, 0, (byte)(length >> 8), (byte)length, 0];

    public static byte[] ReportLuns(uint alloc = 1024, byte select = 0)
    {
        var c = new byte[12];
        c[0] = 0xA0; c[2] = select;
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(6), alloc);
        return c;
    }

    /// <summary>REPORT ZONES (ZBC-1 5.2): reporting options in byte 14 with PARTIAL in its top bit.</summary>
    public static byte[] ReportZones(ulong startLba, uint allocation, byte options = 0, bool partial = false)
    {
        var c = new byte[16];
        c[0] = 0x95;
        BinaryPrimitives.WriteUInt64BigEndian(c.AsSpan(2), startLba);
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(10), allocation);
        c[14] = (byte)(options | (partial ? 0x80 : 0));
        return c;
    }

    /// <summary>ZONE OUT (CLOSE / FINISH / OPEN / RESET WRITE POINTER: the service action), for one zone or ALL.</summary>
    public static byte[] ZoneOut(byte action, ulong zoneId, bool all = false)
    {
        var c = new byte[16];
        c[0] = 0x94;
        c[1] = action;
        BinaryPrimitives.WriteUInt64BigEndian(c.AsSpan(2), zoneId);
        c[14] = all ? (byte)1 : (byte)0;
        return c;
    }

    private static byte[] Rw10(byte op, uint lba, ushort blocks, byte flags)
    {
        var c = new byte[10];
        c[0] = op; c[1] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(2), lba);
        BinaryPrimitives.WriteUInt16BigEndian(c.AsSpan(7), blocks);
        return c;
    }

    private static byte[] Rw12(byte op, uint lba, uint blocks, byte flags)
    {
        var c = new byte[12];
        c[0] = op; c[1] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(2), lba);
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(6), blocks);
        return c;
    }

    private static byte[] Rw16(byte op, ulong lba, uint blocks, byte flags)
    {
        var c = new byte[16];
        c[0] = op; c[1] = flags;
        BinaryPrimitives.WriteUInt64BigEndian(c.AsSpan(2), lba);
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(10), blocks);
        return c;
    }

    /// <summary>Returns a copy with byte <paramref name="index"/> set (default: the opcode).</summary>
    public static byte[] With(this byte[] cdb, byte value, int index = 0)
    {
        var c = (byte[])cdb.Clone();
        c[index] = value;
        return c;
    }
}
