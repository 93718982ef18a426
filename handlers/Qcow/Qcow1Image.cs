using System.Buffers.Binary;
using System.Text;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Qcow;

/// <summary>
/// A legacy qcow (version 1) image: 48-byte header, L1 and L2 tables of host offsets,
/// compressed clusters flagged by bit 63, no refcounts. Writable when served: new clusters
/// and L2 tables are appended at the (cluster-aligned) end of the file, written and synced
/// before the L2 or L1 entry that points at them, so a crash leaves only unreferenced
/// space. A write into a compressed cluster rewrites it uncompressed. One lock serializes
/// every operation: v1 is a format for old images, not for speed.
/// </summary>
internal sealed class Qcow1Image : IImage
{
    private const ulong CompressedFlag = 1UL << 63;

    private readonly ImageStorage file;
    private readonly IImage? backing;
    private readonly int clusterBits;
    private readonly int l2Bits;
    private readonly ulong[] l1;
    private readonly SemaphoreSlim gate = new(1, 1);
    private readonly Dictionary<long, ulong[]> l2Cache = [];
    private readonly Queue<long> l2Order = new();

    private readonly long l1Offset;
    private long fileEnd; // where the next cluster or L2 table goes (cluster aligned)

    private Qcow1Image(ImageStorage file, IImage? backing, long size, int clusterBits, int l2Bits, ulong[] l1, long l1Offset)
    {
        this.l1Offset = l1Offset;
        fileEnd = (file.Length + (1L << clusterBits) - 1) >> clusterBits << clusterBits;
        this.file = file;
        this.backing = backing;
        VirtualSize = size;
        this.clusterBits = clusterBits;
        this.l2Bits = l2Bits;
        this.l1 = l1;
    }

    public string Path => file.Name;

    public long VirtualSize { get; }


    public int ClusterSize => 1 << clusterBits;

    public bool Writable => file.Writable;

    /// <summary>The backing file name and the image, once the header is read.</summary>
    public static async ValueTask<Qcow1Image> OpenAsync(ImageStorage file, Func<string?, ValueTask<IImage?>> openBacking)
    {
        var h = new byte[48];
        await file.ReadAsync(0, h);
        if (BinaryPrimitives.ReadUInt32BigEndian(h) != Qcow2Header.Magic || BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(4)) != 1)
            throw new HandlerConfigException($"{file.Name} is not a qcow version 1 image.");
        var backingOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8));
        var backingSize = (int)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16));
        var size = (long)BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(24));
        int clusterBits = h[32], l2Bits = h[33];
        var crypt = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(36));
        var l1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(40));
        if (crypt != 0)
            throw new HandlerConfigException($"{file.Name} is an encrypted qcow image; encrypted images are not supported, decrypt it with qemu-img convert first.");
        if (clusterBits is < 9 or > 16 || l2Bits is < 6 or > 16 || size < 0 || size > 1L << 50)
            throw new HandlerConfigException($"{file.Name} has an invalid qcow header (cluster_bits {clusterBits}, l2_bits {l2Bits}); the image is damaged.");
        var l1Shift = clusterBits + l2Bits;
        var l1Size = (size + (1L << l1Shift) - 1) >> l1Shift;
        var l1 = await file.ReadTableAsync(l1Offset, l1Size);
        string? backingName = null;
        if (backingOffset != 0)
        {
            if (backingSize is <= 0 or > 1023)
                throw new HandlerConfigException($"{file.Name} has an invalid backing file name field; the image is damaged.");
            var name = new byte[backingSize];
            await file.ReadAsync(backingOffset, name);
            backingName = Encoding.UTF8.GetString(name);
        }
        var backing = await openBacking(backingName);
        return new Qcow1Image(file, backing, size, clusterBits, l2Bits, l1, l1Offset);
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        await gate.WaitAsync(cancellationToken);
        try
        {
            await ReadLockedAsync(offset, destination, cancellationToken);
        }
        finally
        {
            gate.Release();
        }
    }

    private async ValueTask ReadLockedAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var clusterSize = 1 << clusterBits;
        var inside = (int)Math.Clamp(VirtualSize - offset, 0, destination.Length);
        destination.Span[inside..].Clear();
        for (var done = 0; done < inside;)
        {
            var at = offset + done;
            var inCluster = (int)(at & (clusterSize - 1));
            var n = Math.Min(inside - done, clusterSize - inCluster);
            var slice = destination.Slice(done, n);
            var entry = await LookupAsync(at >> clusterBits, cancellationToken);
            if (entry == 0)
            {
                if (backing is null)
                    slice.Span.Clear();
                else
                    await backing.ReadAsync(at, slice, cancellationToken);
            }
            else if ((entry & CompressedFlag) != 0)
            {
                var offsetBits = 63 - clusterBits;
                var host = (long)(entry & ((1UL << offsetBits) - 1));
                var length = (int)((entry >> offsetBits) & (ulong)(clusterSize - 1));
                var compressed = new byte[length];
                await file.ReadAsync(host, compressed, cancellationToken);
                var cluster = new byte[clusterSize];
                Compression.Inflate(compressed, length, cluster);
                cluster.AsSpan(inCluster, n).CopyTo(slice.Span);
            }
            else
                await file.ReadAsync((long)entry + inCluster, slice, cancellationToken);
            done += n;
        }
    }

    private async ValueTask<ulong> LookupAsync(long g, CancellationToken cancellationToken)
    {
        var l1Index = g >> l2Bits;
        if (l1Index >= l1.Length || l1[l1Index] == 0)
            return 0;
        var table = await L2Async((long)l1[l1Index], cancellationToken);
        return table[g & ((1L << l2Bits) - 1)];
    }

    private async ValueTask<ulong[]> L2Async(long l2Offset, CancellationToken cancellationToken)
    {
        if (!l2Cache.TryGetValue(l2Offset, out var table))
        {
            table = await file.ReadTableAsync(l2Offset, 1L << l2Bits, cancellationToken);
            if (l2Order.Count >= 64)
                l2Cache.Remove(l2Order.Dequeue());
            l2Cache[l2Offset] = table;
            l2Order.Enqueue(l2Offset);
        }
        return table;
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, bool fua, CancellationToken cancellationToken)
    {
        var clusterSize = 1 << clusterBits;
        await gate.WaitAsync(cancellationToken);
        try
        {
            for (var done = 0; done < source.Length;)
            {
                var at = offset + done;
                var inCluster = (int)(at & (clusterSize - 1));
                var n = Math.Min(source.Length - done, clusterSize - inCluster);
                await WriteClusterLockedAsync(at, source.Slice(done, n), cancellationToken);
                done += n;
            }
            if (fua)
                file.Sync();
        }
        finally
        {
            gate.Release();
        }
    }

    public ValueTask FlushAsync()
    {
        file.Sync();
        return default;
    }

    private async ValueTask WriteClusterLockedAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var clusterSize = 1 << clusterBits;
        var g = offset >> clusterBits;
        var inCluster = (int)(offset & (clusterSize - 1));
        var entry = await LookupAsync(g, cancellationToken);
        if (entry != 0 && (entry & CompressedFlag) == 0)
        {
            await file.WriteAsync((long)entry + inCluster, data, cancellationToken);
            return;
        }
        // Unallocated or compressed: a new cluster with what the guest sees now and the new data, durable before it is linked.
        var content = new byte[clusterSize];
        await ReadLockedAsync(g << clusterBits, content, cancellationToken);
        data.Span.CopyTo(content.AsSpan(inCluster));
        var l2Offset = await WritableL2Async(g >> l2Bits, cancellationToken);
        var host = Append(clusterSize);
        await file.WriteAsync(host, content, cancellationToken);
        file.Sync();
        var table = await L2Async(l2Offset, cancellationToken);
        var index = (int)(g & ((1L << l2Bits) - 1));
        table[index] = (ulong)host;
        await WriteEntryAsync(l2Offset + index * 8L, (ulong)host, cancellationToken);
    }

    /// <summary>The L2 table of an L1 index, appended (zeroed and synced, then linked) when missing.</summary>
    private async ValueTask<long> WritableL2Async(long l1Index, CancellationToken cancellationToken)
    {
        if (l1[l1Index] != 0)
            return (long)l1[l1Index];
        var l2Offset = Append(8 << l2Bits);
        await file.WriteAsync(l2Offset, new byte[8 << l2Bits], cancellationToken);
        file.Sync();
        l1[l1Index] = (ulong)l2Offset;
        await WriteEntryAsync(l1Offset + l1Index * 8, (ulong)l2Offset, cancellationToken);
        return l2Offset;
    }

    private long Append(int length)
    {
        var at = fileEnd;
        fileEnd += (length + (1L << clusterBits) - 1) >> clusterBits << clusterBits;
        return at;
    }

    private async ValueTask WriteEntryAsync(long at, ulong value, CancellationToken cancellationToken)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        await file.WriteAsync(at, b, cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (file.Writable)
            file.Sync();
        file.Dispose();
        if (backing is not null)
            await backing.DisposeAsync();
    }
}
