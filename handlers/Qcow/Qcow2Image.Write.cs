namespace HandlerRuntime.Handlers.Qcow;

// Writes. The order that survives a crash (any crash leaves at most leaked clusters):
//  1. a new cluster is allocated (refcount 1, in the cache);
//  2. its whole content (copy-on-write source plus the new data) is written;
//  3. only then does the L2 entry (or L1 entry, for a new L2 table) change, in the cache.
// The write-back (Qcow2Image.Flush.cs) writes refcount blocks, syncs, then writes L2
// tables and L1 entries, syncs, and only then applies the frees queued by step 3.
// Clusters whose refcount is 1 are written in place, outside the metadata lock.
internal sealed partial class Qcow2Image
{
    /// <summary>A write to a host cluster the command owns, done after the metadata lock is released.</summary>
    private readonly record struct InPlaceWrite(long Host, int SourceOffset, int Length);

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, bool fua, CancellationToken cancellationToken)
    {
        if (!Writable)
            throw new InvalidOperationException("the image is read-only");
        using (await ranges.AcquireAsync(offset >> clusterBits, (offset + source.Length - 1) >> clusterBits, shared: false, cancellationToken))
        {
            var inPlace = new List<InPlaceWrite>();
            await meta.WaitAsync(cancellationToken);
            try
            {
                for (var done = 0; done < source.Length;)
                {
                    var at = offset + done;
                    var n = Math.Min(source.Length - done, clusterSize - (int)(at & (clusterSize - 1)));
                    await WriteClusterLockedAsync(at, source.Slice(done, n), done, inPlace);
                    done += n;
                }
            }
            finally
            {
                meta.Release();
            }
            foreach (var w in inPlace)
                await file.WriteAsync(w.Host, source.Slice(w.SourceOffset, w.Length), cancellationToken);
        }
        if (fua)
            await FlushAsync(cancellationToken);
    }

    private static void AddInPlace(List<InPlaceWrite> list, long host, int sourceOffset, int length)
    {
        if (list.Count > 0)
        {
            var last = list[^1];
            if (last.Host + last.Length == host && last.SourceOffset + last.Length == sourceOffset)
            {
                list[^1] = last with { Length = last.Length + length };
                return;
            }
        }
        list.Add(new InPlaceWrite(host, sourceOffset, length));
    }

    /// <summary>
    /// Writes <paramref name="data"/> (inside one cluster) at guest <paramref name="offset"/>.
    /// Either queues an in-place write or does an allocating write right away.
    /// </summary>
    private async ValueTask WriteClusterLockedAsync(long offset, ReadOnlyMemory<byte> data, int sourceOffset, List<InPlaceWrite> inPlace)
    {
        var g = offset >> clusterBits;
        var inCluster = (int)(offset & (clusterSize - 1));
        var guestStart = g << clusterBits;
        var index = (int)(g & ((1L << l2Bits) - 1));
        using var l2 = await WritableL2Async((int)(g >> l2Bits));
        var (entry, bitmap) = ReadEntry(l2.Data, index);
        var host = (entry & CompressedFlag) != 0 ? 0 : CheckedHost(entry, $"the L2 entry of guest cluster {g}");
        var owned = host != 0 && await refcounts!.GetAsync(host >> clusterBits) == 1;

        if (!extended)
        {
            if (owned && (entry & ZeroFlag) == 0)
            {
                if ((entry & Copied) == 0)
                    SetEntry(l2, index, entry | Copied, 0);
                AddInPlace(inPlace, host + inCluster, sourceOffset, data.Length);
                return;
            }
            if (owned)
            {
                // A preallocated zero cluster this image owns: fill it, then clear the zero flag.
                var filled = new byte[clusterSize];
                data.Span.CopyTo(filled.AsSpan(inCluster));
                await file.WriteAsync(host, filled);
                SetEntry(l2, index, (ulong)host | Copied, 0);
                return;
            }
            // Unallocated, zero, compressed or shared with a snapshot: a new cluster with what the guest sees now, plus the new data.
            var content = new byte[clusterSize];
            await ReadGuestLockedAsync(guestStart, content);
            data.Span.CopyTo(content.AsSpan(inCluster));
            var fresh = await refcounts!.AllocateAsync();
            await file.WriteAsync(fresh, content);
            SetEntry(l2, index, (ulong)fresh | Copied, 0);
            DropReference(entry);
            return;
        }

        var first = inCluster >> subclusterBits;
        var last = (inCluster + data.Length - 1) >> subclusterBits;
        var touched = (uint)((1UL << (last + 1)) - (1UL << first));
        var allocated = (uint)bitmap;
        var zeros = (uint)(bitmap >> 32);
        var spanStart = first << subclusterBits;
        var spanLength = (last - first + 1) << subclusterBits;
        if (owned)
        {
            if ((allocated & touched) == touched)
            {
                if ((entry & Copied) == 0)
                    SetEntry(l2, index, entry | Copied, bitmap);
                AddInPlace(inPlace, host + inCluster, sourceOffset, data.Length);
                return;
            }
            // Some touched subclusters are not allocated yet: fill them from what the guest sees, then mark them allocated.
            var span = new byte[spanLength];
            await ReadGuestLockedAsync(guestStart + spanStart, span);
            data.Span.CopyTo(span.AsSpan(inCluster - spanStart));
            await file.WriteAsync(host + spanStart, span);
            SetEntry(l2, index, (ulong)host | Copied, Bitmap(allocated | touched, zeros & ~touched));
            return;
        }
        if (host != 0 || (entry & CompressedFlag) != 0)
        {
            // Shared or compressed: copy the whole cluster. Compressed clusters have no subclusters, so all become allocated.
            var content = new byte[clusterSize];
            await ReadGuestLockedAsync(guestStart, content);
            data.Span.CopyTo(content.AsSpan(inCluster));
            var fresh = await refcounts!.AllocateAsync();
            await file.WriteAsync(fresh, content);
            var newBitmap = (entry & CompressedFlag) != 0 ? Bitmap(AllSubclusters, 0) : Bitmap(allocated | touched, zeros & ~touched);
            SetEntry(l2, index, (ulong)fresh | Copied, newBitmap);
            DropReference(entry);
            return;
        }
        {
            // No host cluster yet: allocate one and write only the touched subclusters.
            var span = new byte[spanLength];
            await ReadGuestLockedAsync(guestStart + spanStart, span);
            data.Span.CopyTo(span.AsSpan(inCluster - spanStart));
            var fresh = await refcounts!.AllocateAsync();
            await file.WriteAsync(fresh + spanStart, span);
            SetEntry(l2, index, (ulong)fresh | Copied, Bitmap(touched, zeros & ~touched));
        }
    }

    private static ulong Bitmap(uint allocated, uint zeros) => allocated | ((ulong)zeros << 32);

    /// <summary>
    /// The L2 table for L1 index <paramref name="l1Index"/>, made writable: created (zeroed on
    /// disk first) when missing, copied when shared with a snapshot. Pinned.
    /// </summary>
    private async ValueTask<MetadataCache.Pin> WritableL2Async(int l1Index)
    {
        var l1Entry = l1[l1Index];
        var table = CheckedHost(l1Entry, $"L1 entry {l1Index}");
        if (table == 0)
        {
            var fresh = await refcounts!.AllocateAsync();
            var zeros = new byte[clusterSize];
            await file.WriteAsync(fresh, zeros);
            var pin = await cache.InsertAsync(fresh, zeros, TableKind.L2, dirty: false);
            SetL1(l1Index, (ulong)fresh | Copied);
            return pin;
        }
        if (await refcounts!.GetAsync(table >> clusterBits) == 1)
        {
            if ((l1Entry & Copied) == 0)
                SetL1(l1Index, l1Entry | Copied);
            return await cache.GetAsync(table, TableKind.L2);
        }
        // Shared with a snapshot. Every cluster it maps is then reachable twice, so none keeps COPIED in the copy.
        byte[] copy;
        using (var old = await cache.GetAsync(table, TableKind.L2))
            copy = (byte[])old.Data.Clone();
        for (var at = 0; at < copy.Length; at += l2EntryBytes)
            copy[at] &= 0x7F;
        var moved = await refcounts.AllocateAsync();
        await file.WriteAsync(moved, copy);
        var movedPin = await cache.InsertAsync(moved, copy, TableKind.L2, dirty: false);
        SetL1(l1Index, (ulong)moved | Copied);
        refcounts.QueueFree(table, clusterSize);
        return movedPin;
    }
}
