using System.Buffers.Binary;

namespace HandlerRuntime.Zbc.Testing;

/// <summary>
/// Block content that says which write put it there: the LBA and the write id in the first
/// 16 bytes, then a filler derived from both, so a misplaced, stale or torn block never
/// passes for another. Shared by the crash driver and the tests (linked source).
/// </summary>
internal static class BlockPattern
{
    public static void Fill(Span<byte> block, long lba, long writeId)
    {
        BinaryPrimitives.WriteInt64LittleEndian(block, lba);
        BinaryPrimitives.WriteInt64LittleEndian(block[8..], writeId);
        var seed = (byte)(lba * 31 + writeId * 17 + 1);
        for (var i = 16; i < block.Length; i++)
            block[i] = (byte)(seed + i);
    }

    public static byte[] Blocks(long lba, int blocks, int blockSize, long writeId)
    {
        var data = new byte[blocks * blockSize];
        for (var i = 0; i < blocks; i++)
            Fill(data.AsSpan(i * blockSize, blockSize), lba + i, writeId);
        return data;
    }

    /// <summary>The write id a block carries, 0 for a block of zeros, -1 for anything else.</summary>
    public static long WriteIdOf(ReadOnlySpan<byte> block, long lba)
    {
        if (!block.ContainsAnyExcept((byte)0))
            return 0;
        var id = BinaryPrimitives.ReadInt64LittleEndian(block[8..]);
        Span<byte> expected = stackalloc byte[block.Length];
        Fill(expected, lba, id);
        return block.SequenceEqual(expected) && id > 0 ? id : -1;
    }
}
