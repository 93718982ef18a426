using System.Runtime.CompilerServices;
using HandlerRuntime.Buffers;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

/// <summary>
/// Commands that move data to or from the medium (SBC-3): READ, WRITE, VERIFY,
/// SYNCHRONIZE CACHE, WRITE SAME and UNMAP, turned into block operations on the
/// handler's device. LBA ranges were checked by the dispatcher (task.Lba, task.Blocks).
/// </summary>
internal static class MediumCommands
{
    public const uint MaxUnmapBlocks = 0x0010_0000; // 1 Mi blocks: a larger VPD B0h value reads as "insanely big" to initiators (libiscsi Inquiry.BlockLimits)
    public const uint MaxUnmapDescriptors = 1024;
    private const int ChunkBytes = 1 << 20;

    public static ulong MaxWriteSameBlocks(ScsiLun lun) => (ulong)(1L << 30) / (ulong)lun.BlockSize;

    public static ValueTask Read(ScsiLun lun, ScsiTask task)
    {
        if (task.Blocks == 0)
            return default;
        CheckTransferLength(lun, task);
        var bs = lun.BlockSize;
        var memory = task.AllocateDataIn((int)task.Blocks * bs);
        return lun.Device.ReadAsync((long)task.Lba * bs, memory, task.AbortToken);
    }

    public static ValueTask Write(ScsiLun lun, ScsiTask task)
    {
        if (task.Blocks == 0)
            return default;
        CheckTransferLength(lun, task);
        var bs = lun.BlockSize;
        var bytes = (int)task.Blocks * bs;
        task.RequireDataOut(bytes);
        var fua = task.CdbSpan[0] != 0x0A && (task.CdbSpan[1] & 0x08) != 0;
        return WriteDurably(lun, (long)task.Lba * bs, task.DataOutBuffer!.Memory[..bytes], fua, task.AbortToken);
    }

    /// <summary>WRITE AND VERIFY(10/12/16): a durable write, then with BYTCHK 01b the medium compared with the data-out.</summary>
    public static ValueTask WriteAndVerify(ScsiLun lun, ScsiTask task)
    {
        var bytchk = (task.CdbSpan[1] >> 1) & 3;
        if (bytchk >= 2)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(1, 2));
        if (task.Blocks == 0)
            return default;
        CheckTransferLength(lun, task);
        var bytes = (int)task.Blocks * lun.BlockSize;
        task.RequireDataOut(bytes);
        return WriteThenCompareAsync(lun, task, bytes, bytchk == 1);
    }

    private static async ValueTask WriteThenCompareAsync(ScsiLun lun, ScsiTask task, int bytes, bool compare)
    {
        await WriteDurably(lun, (long)task.Lba * lun.BlockSize, task.DataOutBuffer!.Memory[..bytes], fua: true, task.AbortToken);
        if (compare)
            await CompareAsync(lun, task, oneBlockForAll: false);
    }

    /// <summary>
    /// Writes with FUA when asked or when the write cache is off, so GOOD always means what the
    /// initiator asked (the device adapter emulates FUA where the device has none).
    /// </summary>
    public static ValueTask WriteDurably(ScsiLun lun, long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken ct)
        => lun.Device.WriteAsync(offset, data, fua || !lun.Mode.WriteCacheEnabled ? WriteFlags.Fua : WriteFlags.None, ct);

    /// <summary>PRE-FETCH: nothing is cached in the runtime, so the blocks never "fit" and the answer is GOOD (SBC-3 5.9).</summary>
    public static ValueTask PreFetch(ScsiLun lun, ScsiTask task) => default;

    public static ValueTask SynchronizeCache(ScsiLun lun, ScsiTask task) => lun.Device.FlushAsync(task.AbortToken);

    /// <summary>VERIFY: BYTCHK 00b checks the range only, 01b compares the data-out, 11b compares one block against each.</summary>
    public static ValueTask Verify(ScsiLun lun, ScsiTask task)
    {
        var bytchk = (task.CdbSpan[1] >> 1) & 3;
        if (bytchk == 2)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(1, 2));
        if (task.Blocks == 0 || bytchk == 0)
            return default;
        var bs = lun.BlockSize;
        var needed = bytchk == 1 ? (long)task.Blocks * bs : bs;
        task.RequireDataOut(needed);
        return CompareAsync(lun, task, bytchk == 3);
    }

    private static async ValueTask CompareAsync(ScsiLun lun, ScsiTask task, bool oneBlockForAll)
    {
        var bs = lun.BlockSize;
        var expected = task.DataOutBuffer!.Memory;
        var total = (long)task.Blocks * bs;
        var offset = (long)task.Lba * bs;
        using var buffer = BufferPool.Shared.Rent((int)Math.Min(total, ChunkBytes));
        for (long done = 0; done < total;)
        {
            var n = (int)Math.Min(total - done, buffer.Array.Length);
            var chunk = buffer.Array.AsMemory(0, n);
            await lun.Device.ReadAsync(offset + done, chunk, task.AbortToken);
            var mismatch = oneBlockForAll ? FirstMismatchRepeated(chunk.Span, expected.Span[..bs]) : FirstMismatch(chunk.Span, expected.Span.Slice((int)done, n));
            if (mismatch >= 0)
                throw new ScsiException(Sense.Miscompare((ulong)(done + mismatch)));
            done += n;
        }
    }

    private static int FirstMismatch(ReadOnlySpan<byte> actual, ReadOnlySpan<byte> expected)
    {
        var common = actual.CommonPrefixLength(expected);
        return common == actual.Length ? -1 : common;
    }

    private static int FirstMismatchRepeated(ReadOnlySpan<byte> actual, ReadOnlySpan<byte> block)
    {
        for (var at = 0; at < actual.Length; at += block.Length)
        {
            var m = FirstMismatch(actual.Slice(at, block.Length), block);
            if (m >= 0)
                return at + m;
        }
        return -1;
    }

    /// <summary>WRITE SAME(10/16): one block of data (or none with NDOB) repeated over the range, or the range unmapped.</summary>
    public static ValueTask WriteSame(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        var unmap = (cdb[1] & 0x08) != 0;
        var ndob = cdb[0] == 0x93 && (cdb[1] & 0x01) != 0;
        // WSNZ=0: zero blocks means from the LBA to the end of the medium (SBC-3 5.42).
        var blocks = task.Blocks == 0 ? (ulong)lun.BlockCount - task.Lba : task.Blocks;
        if (blocks > MaxWriteSameBlocks(lun))
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(cdb[0] == 0x93 ? 10 : 7));
        if (unmap && (lun.Capabilities & DeviceCapabilities.Unmap) == 0)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(1, 3));
        var bs = lun.BlockSize;
        AtomicCommands.RequireExactDataOut(task, ndob ? 0 : bs);
        var pattern = ndob ? ReadOnlyMemory<byte>.Empty : task.DataOutBuffer!.Memory[..bs];
        var offset = (long)task.Lba * bs;
        var length = (long)blocks * bs;
        var durable = !lun.Mode.WriteCacheEnabled;

        // UNMAP=1 deallocates whatever the data says (as LIO and libiscsi read SBC-3 5.43);
        // with LBPRZ the range then reads back as zeros.
        if (unmap)
            return lun.Device.UnmapAsync(offset, length, task.AbortToken);
        if (ndob || !pattern.Span.ContainsAnyExcept((byte)0))
            return lun.Device.WriteZeroesAsync(offset, length, durable ? ZeroFlags.Fua : ZeroFlags.None, task.AbortToken);
        return lun.Device.WritePatternAsync(offset, length, pattern, durable, task.AbortToken);
    }

    /// <summary>UNMAP: every descriptor is checked before any range is deallocated.</summary>
    public static ValueTask Unmap(ScsiLun lun, ScsiTask task)
    {
        var length = Cdb.U16(task.CdbSpan, 7);
        if (length == 0)
            return default;
        if (length < 8)
            throw new ScsiException(Sense.ParameterListLengthError);
        task.RequireDataOut(length);
        var p = task.DataOutBuffer!.Span[..length];
        var descriptorBytes = Math.Min(Cdb.U16(p, 2), length - 8);
        var count = descriptorBytes / 16;
        if (count > MaxUnmapDescriptors)
            throw new ScsiException(Sense.InvalidFieldInParameterList.WithFieldPointer(2, inCdb: false));
        var blockCount = (ulong)lun.BlockCount;
        for (var i = 0; i < count; i++)
        {
            var at = 8 + i * 16;
            var lba = Cdb.U64(p, at);
            var n = Cdb.U32(p, at + 8);
            if (lba > blockCount || n > blockCount - lba) // zero blocks at end-of-LUN is a valid no-op
                throw new ScsiException(Sense.LbaOutOfRange);
            if (n > MaxUnmapBlocks)
                throw new ScsiException(Sense.InvalidFieldInParameterList.WithFieldPointer(at + 8, inCdb: false));
        }
        return count == 0 ? default : UnmapDescriptorsAsync(lun, task, count);
    }

    private static async ValueTask UnmapDescriptorsAsync(ScsiLun lun, ScsiTask task, int count)
    {
        var bs = lun.BlockSize;
        for (var i = 0; i < count; i++)
        {
            var p = task.DataOutBuffer!.Memory.Span;
            var at = 8 + i * 16;
            var lba = Cdb.U64(p, at);
            var n = Cdb.U32(p, at + 8);
            if (n > 0)
                await lun.Device.UnmapAsync((long)lba * bs, (long)n * bs, task.AbortToken);
        }
    }

    /// <summary>More blocks than the LU moves in one command: refused, pointing at the CDB's transfer length field.</summary>
    public static void CheckTransferLength(ScsiLun lun, ScsiTask task)
    {
        if (task.Blocks <= lun.MaxTransferBlocks)
            return;
        var field = task.Command!.Range switch
        {
            RangeLayout.Cdb6 => 4,
            RangeLayout.Cdb12 => 6,
            RangeLayout.Cdb16 => 10,
            _ => 7,
        };
        throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(field));
    }
}
