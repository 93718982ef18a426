using System.Buffers.Binary;

namespace HandlerRuntime.Handlers.Qcow;

// Refcount rebuild for an image left dirty (lazy refcounts, not closed cleanly), as QEMU
// does on open: count every reference, write a fresh refcount table and blocks after
// everything in use, switch the header to them, then make COPIED flags agree.
internal sealed partial class Qcow2Image
{
    private sealed class ReferenceCounts
    {
        private ulong[] counts = new ulong[1024];

        public long Length { get; private set; }

        public ulong this[long cluster] => cluster < Length ? counts[cluster] : 0;

        public void Add(long cluster)
        {
            if (cluster >= counts.Length)
                Array.Resize(ref counts, (int)Math.Max(cluster + 1, counts.Length * 2L));
            counts[cluster]++;
            Length = Math.Max(Length, cluster + 1);
        }
    }

    private async ValueTask RebuildRefcountsAsync()
    {
        var counts = new ReferenceCounts();
        void Count(long offset, long length)
        {
            for (var c = offset >> clusterBits; c <= (offset + length - 1) >> clusterBits; c++)
                counts.Add(c);
        }

        Count(0, clusterSize);
        if (header.L1Size > 0)
            Count(header.L1Offset, (long)header.L1Size * 8);
        await CountMappingAsync(l1, Count);
        var (snapshots, tableBytes) = await SnapshotTable.ReadAsync(file, header);
        if (tableBytes > 0)
            Count(header.SnapshotsOffset, tableBytes);
        foreach (var s in snapshots)
        {
            if (s.L1Size == 0)
                continue;
            Count(s.L1Offset, (long)s.L1Size * 8);
            var table = await file.ReadTableAsync(s.L1Offset, s.L1Size);
            await CountMappingAsync(table, Count);
        }

        // The new structures go after everything in use, and count themselves.
        var end = Math.Max(counts.Length, (file.Length + clusterSize - 1) >> clusterBits);
        long perBlock = 1L << (clusterBits + 3 - header.RefcountOrder);
        long blocks = 0, tableClusters = 0;
        while (true)
        {
            var total = end + blocks + tableClusters;
            var neededBlocks = (total + perBlock - 1) / perBlock;
            var neededTable = (neededBlocks * 8 + clusterSize - 1) / clusterSize;
            if (neededBlocks == blocks && neededTable == tableClusters)
                break;
            blocks = neededBlocks;
            tableClusters = neededTable;
        }
        for (var c = end; c < end + blocks + tableClusters; c++)
            counts.Add(c);
        var max = refcounts!.MaxRefcount; // loaded before any rebuild, from the same header
        var table2 = new ulong[tableClusters * clusterSize / 8];
        for (long b = 0; b < blocks; b++)
        {
            var block = new byte[clusterSize];
            for (long k = 0; k < perBlock; k++)
            {
                var value = counts[b * perBlock + k];
                if (value > max)
                    throw new InvalidDataException($"{file.Name}: host cluster {b * perBlock + k} has {value} references, more than {header.RefcountOrder}-order refcounts hold.");
                Refcounts.WriteEntry(block, (int)k, header.RefcountOrder, value);
            }
            await file.WriteAsync((end + b) << clusterBits, block);
            table2[b] = (ulong)((end + b) << clusterBits);
        }
        var tableOffset = (end + blocks) << clusterBits;
        await file.WriteAsync(tableOffset, Refcounts.Serialize(table2));
        file.Sync();
        var field = new byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(field, (ulong)tableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(field.AsSpan(8), (uint)tableClusters);
        await file.WriteAsync(Qcow2Header.RefcountTableFieldOffset, field);
        file.Sync();
        header.RefcountTableOffset = tableOffset;
        header.RefcountTableClusters = (int)tableClusters;
        cache.Clear();
        refcounts = await Refcounts.LoadAsync(file, header, cache);
        await FixCopiedFlagsAsync(counts);
    }

    private async ValueTask CountMappingAsync(ulong[] table, Action<long, long> count)
    {
        var l2 = new byte[clusterSize];
        foreach (var l1Entry in table)
        {
            var l2Offset = CheckedHost(l1Entry, "an L1 entry");
            if (l2Offset == 0)
                continue;
            count(l2Offset, clusterSize);
            await file.ReadAsync(l2Offset, l2);
            for (var i = 0; i < 1 << l2Bits; i++)
            {
                var (entry, _) = ReadEntry(l2, i);
                if ((entry & CompressedFlag) != 0)
                {
                    var (offset, length) = CompressedRange(entry);
                    count(offset, length);
                }
                else if ((entry & OffsetMask) != 0)
                    count(CheckedHost(entry, "an L2 entry"), clusterSize);
            }
        }
    }

    /// <summary>COPIED must be set exactly where the refcount is 1, in the active L1 and the L2 tables it owns.</summary>
    private async ValueTask FixCopiedFlagsAsync(ReferenceCounts counts)
    {
        var l2 = new byte[clusterSize];
        for (var i = 0; i < l1.Length; i++)
        {
            var l2Offset = (long)(l1[i] & OffsetMask);
            if (l2Offset == 0)
                continue;
            var tableOwned = counts[l2Offset >> clusterBits] == 1;
            var wantedL1 = tableOwned ? l1[i] | Copied : l1[i] & ~Copied;
            if (wantedL1 != l1[i])
                SetL1(i, wantedL1);
            if (!tableOwned)
                continue; // shared with a snapshot: never written in place
            await file.ReadAsync(l2Offset, l2);
            var changed = false;
            for (var j = 0; j < 1 << l2Bits; j++)
            {
                var at = j * l2EntryBytes;
                var entry = BinaryPrimitives.ReadUInt64BigEndian(l2.AsSpan(at));
                var host = (long)(entry & OffsetMask);
                var wanted = (entry & CompressedFlag) != 0 ? entry & ~Copied
                    : host == 0 ? entry // unallocated or plain zero: COPIED means nothing
                    : counts[host >> clusterBits] == 1 ? entry | Copied : entry & ~Copied;
                if (wanted != entry)
                {
                    BinaryPrimitives.WriteUInt64BigEndian(l2.AsSpan(at), wanted);
                    changed = true;
                }
            }
            if (changed)
                await file.WriteAsync(l2Offset, l2);
        }
        await WriteDirtyL1Async();
        file.Sync();
    }
}
