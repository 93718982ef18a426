using System.Buffers.Binary;

namespace HandlerRuntime.Handlers.Qcow;

// Write-back of cached metadata, in the order that keeps every crash point consistent.
internal sealed partial class Qcow2Image
{
    public async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        if (!Writable)
            return;
        await meta.WaitAsync(cancellationToken);
        try
        {
            await WriteBackLockedAsync();
        }
        finally
        {
            meta.Release();
        }
    }

    /// <summary>
    /// 1. dirty refcount blocks, sync: every cluster an entry may point at is counted and its data durable;
    /// 2. dirty L2 tables and L1 entries, sync: the references are durable;
    /// 3. the queued frees, refcount blocks again, sync: dropped references release their clusters.
    /// A crash between any two steps leaves leaked clusters at worst.
    /// </summary>
    private async ValueTask WriteBackLockedAsync()
    {
        cache.InWriteBack = true;
        try
        {
            foreach (var t in cache.DirtyTables(TableKind.Refblock))
                await cache.WriteAsync(t);
            file.Sync();
            var dirtyL2 = cache.DirtyTables(TableKind.L2);
            if (dirtyL2.Count > 0 || dirtyL1.Count > 0)
            {
                foreach (var t in dirtyL2)
                    await cache.WriteAsync(t);
                await WriteDirtyL1Async();
                file.Sync();
            }
            if (refcounts!.PendingFreeCount > 0)
            {
                await refcounts.ApplyFreesAsync();
                foreach (var t in cache.DirtyTables(TableKind.Refblock))
                    await cache.WriteAsync(t);
                file.Sync();
            }
        }
        finally
        {
            cache.InWriteBack = false;
        }
    }

    /// <summary>Writes the dirty L1 entries, a run of neighbours in one write.</summary>
    private async ValueTask WriteDirtyL1Async()
    {
        var indices = dirtyL1.ToList();
        for (var i = 0; i < indices.Count;)
        {
            var j = i;
            while (j + 1 < indices.Count && indices[j + 1] == indices[j] + 1)
                j++;
            var bytes = new byte[(j - i + 1) * 8];
            for (var k = i; k <= j; k++)
                BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan((k - i) * 8), l1[indices[k]]);
            await file.WriteAsync(header.L1Offset + (long)indices[i] * 8, bytes);
            i = j + 1;
        }
        dirtyL1.Clear();
    }
}
