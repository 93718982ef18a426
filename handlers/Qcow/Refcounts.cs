using System.Buffers.Binary;

namespace HandlerRuntime.Handlers.Qcow;

/// <summary>
/// The refcount table and refcount blocks: reading and writing entries of any width
/// (1-64 bits), allocating free clusters, growing the table, and freeing clusters only
/// once the references to them are gone from disk (frees wait in a queue until the
/// owner's write-back has made the L2/L1 change durable).
/// Used only under the image's metadata lock.
/// </summary>
internal sealed class Refcounts
{
    public const ulong TableOffsetMask = ~0x1FFUL;

    private readonly ImageStorage file;
    private readonly Qcow2Header header;
    private readonly MetadataCache cache;
    private readonly int clusterBits;
    private readonly int clusterSize;
    private readonly int order;
    private readonly int blockBits; // log2 of the entries per refcount block
    private readonly List<long> pendingFrees = []; // host cluster indices, one decrement each
    private ulong[] table;
    private long freeCursor; // no free cluster below this index

    private Refcounts(ImageStorage file, Qcow2Header header, MetadataCache cache, ulong[] table)
    {
        this.file = file;
        this.header = header;
        this.cache = cache;
        this.table = table;
        clusterBits = header.ClusterBits;
        clusterSize = header.ClusterSize;
        order = header.RefcountOrder;
        blockBits = clusterBits + 3 - order;
        MaxRefcount = order == 6 ? ulong.MaxValue : (1UL << (1 << order)) - 1;
    }

    public ulong MaxRefcount { get; }

    public int PendingFreeCount => pendingFrees.Count;

    /// <summary>Frees skipped because the refcount was already 0: the image was inconsistent before.</summary>
    public int InconsistentFrees { get; private set; }

    public static async ValueTask<Refcounts> LoadAsync(ImageStorage file, Qcow2Header header, MetadataCache cache)
    {
        var table = await file.ReadTableAsync(header.RefcountTableOffset, (long)header.RefcountTableClusters * header.ClusterSize / sizeof(ulong));
        return new Refcounts(file, header, cache, table);
    }

    public async ValueTask<ulong> GetAsync(long cluster)
    {
        var idx = cluster >> blockBits;
        if (idx >= table.Length)
            return 0;
        var block = (long)(table[idx] & TableOffsetMask);
        if (block == 0)
            return 0;
        using var pin = await cache.GetAsync(block, TableKind.Refblock);
        return ReadEntry(pin.Data, (int)(cluster & ((1L << blockBits) - 1)), order);
    }

    /// <summary>Allocates one free cluster, sets its refcount to 1 (in the cache) and returns its host offset.</summary>
    public async ValueTask<long> AllocateAsync()
    {
        while (true)
        {
            var c = freeCursor;
            var idx = c >> blockBits;
            if (idx >= table.Length)
            {
                await GrowTableAsync(idx);
                continue;
            }
            var block = (long)(table[idx] & TableOffsetMask);
            if (block == 0)
            {
                await CreateBlockAsync(idx, c);
                continue;
            }
            using (var pin = await cache.GetAsync(block, TableKind.Refblock))
            {
                var entries = 1 << blockBits;
                for (var i = (int)(c & (entries - 1)); i < entries; i++)
                {
                    if (ReadEntry(pin.Data, i, order) != 0)
                        continue;
                    WriteEntry(pin.Data, i, order, 1);
                    pin.MarkDirty();
                    var cluster = (idx << blockBits) + i;
                    freeCursor = cluster + 1;
                    return cluster << clusterBits;
                }
            }
            freeCursor = (idx + 1) << blockBits;
        }
    }

    /// <summary>Queues one decrement for every cluster that [offset, offset+length) touches, applied by <see cref="ApplyFreesAsync"/>.</summary>
    public void QueueFree(long offset, long length)
    {
        for (var c = offset >> clusterBits; c <= (offset + length - 1) >> clusterBits; c++)
            pendingFrees.Add(c);
    }

    /// <summary>Applies the queued decrements; call only once the references they drop are durably gone.</summary>
    public async ValueTask ApplyFreesAsync()
    {
        foreach (var c in pendingFrees)
            await DecrementAsync(c);
        pendingFrees.Clear();
    }

    private async ValueTask DecrementAsync(long c)
    {
        var idx = c >> blockBits;
        var block = idx < table.Length ? (long)(table[idx] & TableOffsetMask) : 0;
        if (block == 0)
        {
            InconsistentFrees++;
            return;
        }
        using var pin = await cache.GetAsync(block, TableKind.Refblock);
        var i = (int)(c & ((1L << blockBits) - 1));
        var value = ReadEntry(pin.Data, i, order);
        if (value == 0)
        {
            // Already free: the image was inconsistent before; never underflow (and never fail a flush for it).
            InconsistentFrees++;
            return;
        }
        WriteEntry(pin.Data, i, order, value - 1);
        pin.MarkDirty();
        if (value == 1)
        {
            cache.Drop(c << clusterBits);
            freeCursor = Math.Min(freeCursor, c);
        }
    }

    /// <summary>
    /// A refcount block for range <paramref name="idx"/>, placed at free cluster <paramref name="c"/>
    /// inside the range it describes, so it counts itself. It is durable before the table points at it.
    /// </summary>
    private async ValueTask CreateBlockAsync(long idx, long c)
    {
        var data = new byte[clusterSize];
        WriteEntry(data, (int)(c & ((1L << blockBits) - 1)), order, 1);
        var offset = c << clusterBits;
        await file.WriteAsync(offset, data);
        file.Sync();
        table[idx] = (ulong)offset;
        await WriteTableEntryAsync(idx);
        (await cache.InsertAsync(offset, data, TableKind.Refblock, dirty: false)).Dispose();
        freeCursor = c + 1;
    }

    /// <summary>
    /// Moves the refcount table to a larger one at the start of the first range no refcount
    /// block covers, preceded by the refcount blocks that count the new table and themselves.
    /// Order: blocks and table written, sync, header switched in one 12-byte write, sync, old table freed.
    /// </summary>
    private async ValueTask GrowTableAsync(long neededIndex)
    {
        long entriesPerBlock = 1L << blockBits;
        var firstIndex = Math.Max(table.Length, neededIndex);
        var area = firstIndex * entriesPerBlock;
        long blocks = 1, tableClusters;
        while (true)
        {
            var entries = Math.Max(firstIndex + blocks, table.Length + table.Length / 2 + 1);
            tableClusters = (entries * 8 + clusterSize - 1) / clusterSize;
            var needed = (blocks + tableClusters + entriesPerBlock - 1) / entriesPerBlock;
            if (needed <= blocks)
                break;
            blocks = needed;
        }
        var used = blocks + tableClusters;
        var newTable = new ulong[tableClusters * clusterSize / 8];
        Array.Copy(table, newTable, table.Length);
        var newBlocks = new List<(long Offset, byte[] Data)>();
        for (long j = 0; j < blocks; j++)
        {
            var data = new byte[clusterSize];
            for (long k = 0; k < entriesPerBlock && j * entriesPerBlock + k < used; k++)
                WriteEntry(data, (int)k, order, 1);
            var offset = (area + j) << clusterBits;
            await file.WriteAsync(offset, data);
            newTable[firstIndex + j] = (ulong)offset;
            newBlocks.Add((offset, data));
        }
        var tableOffset = (area + blocks) << clusterBits;
        await file.WriteAsync(tableOffset, Serialize(newTable));
        file.Sync();

        var field = new byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(field, (ulong)tableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(field.AsSpan(8), (uint)tableClusters);
        await file.WriteAsync(Qcow2Header.RefcountTableFieldOffset, field);
        file.Sync();

        var oldOffset = header.RefcountTableOffset;
        var oldClusters = header.RefcountTableClusters;
        header.RefcountTableOffset = tableOffset;
        header.RefcountTableClusters = (int)tableClusters;
        table = newTable;
        foreach (var (offset, data) in newBlocks)
            (await cache.InsertAsync(offset, data, TableKind.Refblock, dirty: false)).Dispose();
        // The header no longer points at the old table: it can be freed at once.
        for (var c = oldOffset >> clusterBits; c < (oldOffset >> clusterBits) + oldClusters; c++)
            await DecrementAsync(c);
    }

    private async ValueTask WriteTableEntryAsync(long idx)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, table[idx]);
        await file.WriteAsync(header.RefcountTableOffset + idx * 8, b);
    }

    public static byte[] Serialize(ulong[] entries)
    {
        var b = new byte[entries.Length * 8];
        for (var i = 0; i < entries.Length; i++)
            BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(i * 8), entries[i]);
        return b;
    }

    public static ulong ReadEntry(byte[] block, int i, int order)
    {
        switch (order)
        {
            case < 3:
                var bits = 1 << order;
                var bit = i * bits;
                return (ulong)((block[bit >> 3] >> (bit & 7)) & ((1 << bits) - 1));
            case 3:
                return block[i];
            case 4:
                return BinaryPrimitives.ReadUInt16BigEndian(block.AsSpan(i * 2));
            case 5:
                return BinaryPrimitives.ReadUInt32BigEndian(block.AsSpan(i * 4));
            default:
                return BinaryPrimitives.ReadUInt64BigEndian(block.AsSpan(i * 8));
        }
    }

    public static void WriteEntry(byte[] block, int i, int order, ulong value)
    {
        switch (order)
        {
            case < 3:
                var bits = 1 << order;
                var bit = i * bits;
                var mask = ((1 << bits) - 1) << (bit & 7);
                block[bit >> 3] = (byte)((block[bit >> 3] & ~mask) | (((int)value << (bit & 7)) & mask));
                break;
            case 3:
                block[i] = (byte)value;
                break;
            case 4:
                BinaryPrimitives.WriteUInt16BigEndian(block.AsSpan(i * 2), (ushort)value);
                break;
            case 5:
                BinaryPrimitives.WriteUInt32BigEndian(block.AsSpan(i * 4), (uint)value);
                break;
            default:
                BinaryPrimitives.WriteUInt64BigEndian(block.AsSpan(i * 8), value);
                break;
        }
    }
}
