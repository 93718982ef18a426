using HandlerRuntime.Buffers;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

/// <summary>
/// Read-modify-write commands (SBC-3 5.2, 5.8). They are declared Exclusive in the
/// command table, so the task set runs each alone: no other command of any initiator
/// can slip between the read and the write.
/// </summary>
internal static class AtomicCommands
{
    /// <summary>VPD B0h MAXIMUM COMPARE AND WRITE LENGTH (a one-byte field).</summary>
    public const int MaxCompareAndWriteBlocks = 255;

    /// <summary>COMPARE AND WRITE: compare N blocks with the first half of the data-out; if equal, write the second half.</summary>
    public static ValueTask CompareAndWrite(ScsiLun lun, ScsiTask task)
    {
        if (task.Blocks == 0)
        {
            // Zero blocks transfer nothing; an initiator that announces data disagrees with its own CDB.
            if (task.ExpectedDataOutLength != 0)
                throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(13));
            return default;
        }
        if (task.Blocks > MaxCompareAndWriteBlocks)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(13));
        var bytes = (int)task.Blocks * lun.BlockSize;
        RequireExactDataOut(task, 2 * bytes);
        return CompareAndWriteAsync(lun, task, bytes);
    }

    private static async ValueTask CompareAndWriteAsync(ScsiLun lun, ScsiTask task, int bytes)
    {
        var offset = (long)task.Lba * lun.BlockSize;
        var data = task.DataOutBuffer!.Memory;
        using var current = BufferPool.Shared.Rent(bytes);
        await lun.Device.ReadAsync(offset, current.Memory, task.AbortToken);
        var same = current.Span.CommonPrefixLength(data.Span[..bytes]);
        if (same < bytes)
            throw new ScsiException(Sense.Miscompare((ulong)same));
        await MediumCommands.WriteDurably(lun, offset, data.Slice(bytes, bytes), Fua(task), task.AbortToken);
    }

    /// <summary>ORWRITE(16): each block becomes its current content OR the data-out.</summary>
    public static ValueTask OrWrite(ScsiLun lun, ScsiTask task)
    {
        if (task.Blocks == 0)
            return default;
        MediumCommands.CheckTransferLength(lun, task);
        var bytes = (int)task.Blocks * lun.BlockSize;
        task.RequireDataOut(bytes);
        return OrWriteAsync(lun, task, bytes);
    }

    private static async ValueTask OrWriteAsync(ScsiLun lun, ScsiTask task, int bytes)
    {
        var offset = (long)task.Lba * lun.BlockSize;
        using var merged = BufferPool.Shared.Rent(bytes);
        await lun.Device.ReadAsync(offset, merged.Memory, task.AbortToken);
        Or(merged.Span, task.DataOutBuffer!.Span[..bytes]);
        await MediumCommands.WriteDurably(lun, offset, merged.Memory, Fua(task), task.AbortToken);
    }

    private static void Or(Span<byte> into, ReadOnlySpan<byte> with)
    {
        var wide = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(into);
        var wideWith = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(with);
        for (var i = 0; i < wide.Length; i++)
            wide[i] |= wideWith[i];
        for (var i = wide.Length * 8; i < into.Length; i++)
            into[i] |= with[i];
    }

    /// <summary>The largest WRITE ATOMIC, in blocks (VPD B0h MAXIMUM ATOMIC TRANSFER LENGTH): 1 MiB.</summary>
    public static int MaxAtomicBlocks(ScsiLun lun) => Math.Min(lun.MaxTransferBlocks, (1 << 20) / lun.BlockSize);

    /// <summary>WRITE ATOMIC(16): all the blocks or none, even across a crash, through the LU's journal.</summary>
    public static ValueTask WriteAtomic(ScsiLun lun, ScsiTask task)
    {
        if (task.Blocks == 0)
            return default;
        if (task.Blocks > MaxAtomicBlocks(lun))
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(12));
        var bytes = (int)task.Blocks * lun.BlockSize;
        task.RequireDataOut(bytes);
        return lun.AtomicJournal!.WriteAsync(lun.Device, (long)task.Lba * lun.BlockSize, task.DataOutBuffer!.Memory[..bytes], task.AbortToken);
    }

    private static bool Fua(ScsiTask task) => (task.CdbSpan[1] & 0x08) != 0;

    /// <summary>
    /// Commands whose parameter data has one exact size refuse any other the initiator
    /// announces or sends (libiscsi's InvalidDataOutSize: too small and too large both fail).
    /// </summary>
    public static void RequireExactDataOut(ScsiTask task, int bytes)
    {
        if (task.DataOutLength < bytes || task.ExpectedDataOutLength != bytes)
            throw new ScsiException(Sense.InvalidFieldInInformationUnit);
    }
}
