namespace HandlerRuntime.Handlers.Qcow;

// UNMAP and write zeroes. Whole clusters (and, with extended L2, whole subclusters)
// change only their L2 entries; the rest is written as zero data. Nothing that was
// zeroed can read back stale data: v3 uses the zero flag (or zero subcluster bits)
// whenever a backing file would show through, v2 deallocates only without a backing file.
internal sealed partial class Qcow2Image
{
    public enum ZeroMode
    {
        /// <summary>UNMAP: deallocate; zeros afterwards only when <see cref="UnmapReadsZeroes"/>.</summary>
        Unmap,
        /// <summary>Write zeroes that may deallocate.</summary>
        ZeroMayUnmap,
        /// <summary>Write zeroes that keep owned clusters allocated.</summary>
        ZeroKeep,
    }

    public async ValueTask ZeroAsync(long offset, long length, ZeroMode mode, bool fua, CancellationToken cancellationToken)
    {
        if (!Writable)
            throw new InvalidOperationException("the image is read-only");
        var zeros = new byte[clusterSize];
        using (await ranges.AcquireAsync(offset >> clusterBits, (offset + length - 1) >> clusterBits, shared: false, cancellationToken))
        {
            var inPlace = new List<InPlaceWrite>();
            await meta.WaitAsync(cancellationToken);
            try
            {
                for (long done = 0; done < length;)
                {
                    var at = offset + done;
                    var inCluster = (int)(at & (clusterSize - 1));
                    var n = (int)Math.Min(length - done, clusterSize - inCluster);
                    var wholeCluster = inCluster == 0 && (n == clusterSize || at + n >= VirtualSize);
                    if (wholeCluster)
                        await ZeroClusterLockedAsync(at >> clusterBits, mode);
                    else if (extended)
                        await ZeroSubclustersLockedAsync(at, n, mode, inPlace, zeros);
                    else if (mode != ZeroMode.Unmap || UnmapReadsZeroes)
                        await WriteClusterLockedAsync(at, zeros.AsMemory(0, n), 0, inPlace);
                    // else: UNMAP of part of a cluster, with data behind it: advisory, left as it is.
                    done += n;
                }
            }
            finally
            {
                meta.Release();
            }
            foreach (var w in inPlace)
                await file.WriteAsync(w.Host, zeros.AsMemory(0, w.Length), cancellationToken);
        }
        if (fua)
            await FlushAsync(cancellationToken);
    }

    private async ValueTask ZeroClusterLockedAsync(long g, ZeroMode mode)
    {
        var l1Index = (int)(g >> l2Bits);
        var index = (int)(g & ((1L << l2Bits) - 1));
        if ((l1[l1Index] & OffsetMask) == 0 && backing is null)
            return; // no L2 table and nothing behind: already reads as zeros
        var (entry, bitmap) = await LookupAsync(g);
        var host = (entry & CompressedFlag) != 0 ? 0 : CheckedHost(entry, $"the L2 entry of guest cluster {g}");
        // Keeping the allocation needs a way to say "reads as zeros" with an offset: v3 only.
        var keep = mode == ZeroMode.ZeroKeep && (extended || header.Version >= 3) && host != 0
            && await refcounts!.GetAsync(host >> clusterBits) == 1;
        ulong newEntry, newBitmap = 0;
        if (extended)
        {
            newEntry = keep ? (ulong)host | Copied : 0;
            newBitmap = backing is null && !keep ? 0 : Bitmap(0, AllSubclusters);
        }
        else if (header.Version >= 3)
            newEntry = keep ? (ulong)host | Copied | ZeroFlag : backing is null ? 0 : ZeroFlag;
        else if (backing is null || mode == ZeroMode.Unmap)
            newEntry = 0; // v2: unallocated reads zeros without a backing file; UNMAP without LBPRZ may show the backing data
        else
        {
            // v2 with a backing file: only written zeros hide the backing data.
            var none = new List<InPlaceWrite>();
            await WriteClusterLockedAsync(g << clusterBits, new byte[(int)Math.Min(clusterSize, VirtualSize - (g << clusterBits))], 0, none);
            foreach (var w in none)
                await file.WriteAsync(w.Host, new byte[w.Length]);
            return;
        }
        if (newEntry == entry && newBitmap == bitmap)
            return;
        using var l2 = await WritableL2Async(l1Index);
        (entry, _) = ReadEntry(l2.Data, index); // the same entry, unless the table was just copied (then COPIED differs only)
        SetEntry(l2, index, newEntry, newBitmap);
        if (!keep)
            DropReference(entry);
    }

    /// <summary>Extended L2: whole subclusters get their zero bit; partial subclusters at the edges are written as zeros.</summary>
    private async ValueTask ZeroSubclustersLockedAsync(long offset, int length, ZeroMode mode, List<InPlaceWrite> inPlace, byte[] zeros)
    {
        var g = offset >> clusterBits;
        var inCluster = (int)(offset & (clusterSize - 1));
        var unit = 1 << subclusterBits;
        var firstWhole = (inCluster + unit - 1) >> subclusterBits;
        var endWhole = (inCluster + length) >> subclusterBits; // exclusive
        var (entry, _) = await LookupAsync(g);
        if ((entry & CompressedFlag) != 0 || firstWhole >= endWhole)
        {
            // Compressed clusters have no subclusters: rewrite the part as zero data.
            await WriteClusterLockedAsync(offset, zeros.AsMemory(0, length), 0, inPlace);
            return;
        }
        var headEnd = firstWhole << subclusterBits;
        if (headEnd > inCluster)
            await WriteClusterLockedAsync(offset, zeros.AsMemory(0, headEnd - inCluster), 0, inPlace);
        var tailStart = endWhole << subclusterBits;
        if (inCluster + length > tailStart)
            await WriteClusterLockedAsync((g << clusterBits) + tailStart, zeros.AsMemory(0, inCluster + length - tailStart), 0, inPlace);
        var mask = (uint)((1UL << endWhole) - (1UL << firstWhole));
        var index = (int)(g & ((1L << l2Bits) - 1));
        using var l2 = await WritableL2Async((int)(g >> l2Bits));
        ulong bitmap;
        (entry, bitmap) = ReadEntry(l2.Data, index);
        // The zero bits hide whatever is below; the host cluster (shared or not) stays referenced for its other subclusters.
        var updated = Bitmap((uint)bitmap & ~mask, (uint)(bitmap >> 32) | mask);
        if (mode == ZeroMode.Unmap && backing is null)
            updated = Bitmap((uint)bitmap & ~mask, (uint)(bitmap >> 32) & ~mask); // unallocated reads zeros anyway
        if (updated != bitmap)
            SetEntry(l2, index, entry, updated);
    }
}
