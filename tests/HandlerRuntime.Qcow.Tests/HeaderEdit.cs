using System.Buffers.Binary;

namespace HandlerRuntime.Qcow.Tests;

/// <summary>Byte-level edits of a qcow2 header, for images QEMU's tools will not make (unknown features, renamed extensions).</summary>
internal static class HeaderEdit
{
    public const int IncompatibleField = 72;
    public const int CompatibleField = 80;
    public const int AutoclearField = 88;

    public static async Task<byte[]> ReadClusterZeroAsync(string image, int length = 65536)
    {
        await using var f = File.OpenRead(image);
        var b = new byte[Math.Min(length, f.Length)];
        await f.ReadExactlyAsync(b);
        return b;
    }

    public static async Task<ulong> ReadFieldAsync(string image, int offset)
        => BinaryPrimitives.ReadUInt64BigEndian((await ReadClusterZeroAsync(image, 512)).AsSpan(offset));

    public static async Task WriteFieldAsync(string image, int offset, ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        await using var f = File.OpenWrite(image);
        f.Position = offset;
        await f.WriteAsync(b);
    }

    public static async Task SetBitsAsync(string image, int field, ulong bits)
        => await WriteFieldAsync(image, field, await ReadFieldAsync(image, field) | bits);

    /// <summary>The header extensions: type, offset of the data and its length.</summary>
    public static List<(uint Type, int Offset, int Length)> Extensions(byte[] cluster0)
    {
        var list = new List<(uint, int, int)>();
        var pos = (int)BinaryPrimitives.ReadUInt32BigEndian(cluster0.AsSpan(100));
        while (pos + 8 <= cluster0.Length)
        {
            var type = BinaryPrimitives.ReadUInt32BigEndian(cluster0.AsSpan(pos));
            if (type == 0)
                break;
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(cluster0.AsSpan(pos + 4));
            list.Add((type, pos + 8, length));
            pos += 8 + (length + 7) / 8 * 8;
        }
        return list;
    }

    public static async Task RenameExtensionAsync(string image, uint from, uint to)
    {
        var c0 = await ReadClusterZeroAsync(image);
        var ext = Extensions(c0).Single(e => e.Type == from);
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, to);
        await using var f = File.OpenWrite(image);
        f.Position = ext.Offset - 8;
        await f.WriteAsync(b);
    }

    /// <summary>Inserts an unknown extension before the end marker (images without a backing file only: nothing follows the extensions then).</summary>
    public static async Task AddExtensionAsync(string image, uint type, byte[] data)
    {
        var c0 = await ReadClusterZeroAsync(image);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64BigEndian(c0.AsSpan(8))); // no backing file name after the extensions
        var exts = Extensions(c0);
        var end = exts.Count == 0 ? (int)BinaryPrimitives.ReadUInt32BigEndian(c0.AsSpan(100)) : exts[^1].Offset + (exts[^1].Length + 7) / 8 * 8;
        var block = new byte[8 + (data.Length + 7) / 8 * 8 + 8]; // the extension, then a new end marker
        BinaryPrimitives.WriteUInt32BigEndian(block, type);
        BinaryPrimitives.WriteUInt32BigEndian(block.AsSpan(4), (uint)data.Length);
        data.CopyTo(block, 8);
        await using var f = File.OpenWrite(image);
        f.Position = end;
        await f.WriteAsync(block);
    }
}
