using System.Buffers.Binary;

namespace HandlerRuntime.Handlers.Qcow;

// Guest-to-host mapping (L1 -> L2 -> cluster or subcluster) and reads.
internal sealed partial class Qcow2Image
{
    private enum ExtentKind
    {
        /// <summary>Host data at <see cref="Extent.Host"/>.</summary>
        Data,
        /// <summary>Reads as zeros (zero flag or zero subcluster bit).</summary>
        Zero,
        /// <summary>Not allocated here: the backing chain, or zeros without one.</summary>
        Unallocated,
        /// <summary>Part of a compressed cluster: <see cref="Extent.Host"/> is the L2 entry, <see cref="Extent.InCluster"/> the offset in the cluster.</summary>
        Compressed,
    }

    private readonly record struct Extent(ExtentKind Kind, long Guest, int Length, long Host, int InCluster);

    /// <summary>The L2 entry of guest cluster <paramref name="g"/>, or zeros when no L2 table covers it.</summary>
    private async ValueTask<(ulong Entry, ulong Bitmap)> LookupAsync(long g)
    {
        var l1Index = g >> l2Bits;
        if (l1Index >= l1.Length)
            return (0, 0);
        var table = CheckedHost(l1[l1Index], $"L1 entry {l1Index}");
        if (table == 0)
            return (0, 0);
        using var pin = await cache.GetAsync(table, TableKind.L2);
        return ReadEntry(pin.Data, (int)(g & ((1L << l2Bits) - 1)));
    }

    /// <summary>Describes guest bytes [offset, offset+length) as extents. Under the metadata lock.</summary>
    private async ValueTask MapLockedAsync(long offset, int length, List<Extent> extents)
    {
        while (length > 0)
        {
            var g = offset >> clusterBits;
            var inCluster = (int)(offset & (clusterSize - 1));
            var n = Math.Min(length, clusterSize - inCluster);
            var (entry, bitmap) = await LookupAsync(g);
            if ((entry & CompressedFlag) != 0)
                extents.Add(new Extent(ExtentKind.Compressed, offset, n, (long)entry, inCluster));
            else if (!extended)
            {
                var host = CheckedHost(entry, $"the L2 entry of guest cluster {g}");
                if ((entry & ZeroFlag) != 0)
                    Add(extents, ExtentKind.Zero, offset, n, 0);
                else if (host == 0)
                    Add(extents, ExtentKind.Unallocated, offset, n, 0);
                else
                    Add(extents, ExtentKind.Data, offset, n, host + inCluster);
            }
            else
            {
                var host = CheckedHost(entry, $"the L2 entry of guest cluster {g}");
                for (var pos = inCluster; pos < inCluster + n;)
                {
                    var sc = pos >> subclusterBits;
                    var end = Math.Min(inCluster + n, (sc + 1) << subclusterBits);
                    var allocated = ((bitmap >> sc) & 1) != 0;
                    var zero = ((bitmap >> (32 + sc)) & 1) != 0;
                    var guest = offset + pos - inCluster;
                    if (allocated && (zero || host == 0))
                        throw new InvalidDataException($"{file.Name}: subcluster {sc} of guest cluster {g} has an invalid allocation bitmap; the image is damaged.");
                    if (allocated)
                        Add(extents, ExtentKind.Data, guest, end - pos, host + pos);
                    else
                        Add(extents, zero ? ExtentKind.Zero : ExtentKind.Unallocated, guest, end - pos, 0);
                    pos = end;
                }
            }
            offset += n;
            length -= n;
        }
    }

    private static void Add(List<Extent> extents, ExtentKind kind, long guest, int length, long host)
    {
        if (extents.Count > 0)
        {
            var last = extents[^1];
            if (last.Kind == kind && last.Guest + last.Length == guest && (kind != ExtentKind.Data || last.Host + last.Length == host))
            {
                extents[^1] = last with { Length = last.Length + length };
                return;
            }
        }
        extents.Add(new Extent(kind, guest, length, host, 0));
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var inside = (int)Math.Clamp(VirtualSize - offset, 0, destination.Length);
        destination.Span[inside..].Clear();
        if (inside == 0)
            return;
        using var range = await ranges.AcquireAsync(offset >> clusterBits, (offset + inside - 1) >> clusterBits, shared: true, cancellationToken);
        var extents = new List<Extent>();
        await meta.WaitAsync(cancellationToken);
        try
        {
            await MapLockedAsync(offset, inside, extents);
        }
        finally
        {
            meta.Release();
        }
        await ReadExtentsAsync(extents, offset, destination, cancellationToken);
    }

    /// <summary>What the guest sees at [offset, offset+destination.Length), read while the metadata lock is held (copy-on-write sources).</summary>
    private async ValueTask ReadGuestLockedAsync(long offset, Memory<byte> destination)
    {
        var inside = (int)Math.Clamp(VirtualSize - offset, 0, destination.Length);
        destination.Span[inside..].Clear();
        if (inside == 0)
            return;
        var extents = new List<Extent>();
        await MapLockedAsync(offset, inside, extents);
        await ReadExtentsAsync(extents, offset, destination, CancellationToken.None);
    }

    private async ValueTask ReadExtentsAsync(List<Extent> extents, long baseOffset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        foreach (var e in extents)
        {
            var slice = destination.Slice((int)(e.Guest - baseOffset), e.Length);
            switch (e.Kind)
            {
                case ExtentKind.Data:
                    await file.ReadAsync(e.Host, slice, cancellationToken);
                    break;
                case ExtentKind.Zero:
                    slice.Span.Clear();
                    break;
                case ExtentKind.Unallocated:
                    if (backing is null)
                        slice.Span.Clear();
                    else
                        await backing.ReadAsync(e.Guest, slice, cancellationToken);
                    break;
                case ExtentKind.Compressed:
                    var cluster = await DecompressAsync((ulong)e.Host, cancellationToken);
                    cluster.AsSpan(e.InCluster, e.Length).CopyTo(slice.Span);
                    break;
            }
        }
    }

    private async ValueTask<byte[]> DecompressAsync(ulong entry, CancellationToken cancellationToken)
    {
        var (offset, length) = CompressedRange(entry);
        var compressed = new byte[length];
        await file.ReadAsync(offset, compressed, cancellationToken);
        var cluster = new byte[clusterSize];
        if (header.CompressionType == 1)
            Compression.ZstdDecompress(compressed, length, cluster);
        else
            Compression.Inflate(compressed, length, cluster);
        return cluster;
    }

    /// <summary>Whether the cluster or subcluster at <paramref name="offset"/> holds data of its own here, and how far that state runs (GET LBA STATUS).</summary>
    public async ValueTask<(bool Mapped, long Length)> GetExtentAsync(long offset, long maxLength, CancellationToken cancellationToken)
    {
        var length = (int)Math.Min(maxLength, 64L * clusterSize);
        length = (int)Math.Min(length, VirtualSize - offset);
        var extents = new List<Extent>();
        await meta.WaitAsync(cancellationToken);
        try
        {
            await MapLockedAsync(offset, length, extents);
        }
        finally
        {
            meta.Release();
        }
        // Data behind an unallocated range is still data the LUN returns, so only zeros count as deallocated.
        bool Mapped(Extent e) => e.Kind is ExtentKind.Data or ExtentKind.Compressed || (e.Kind == ExtentKind.Unallocated && backing is not null);
        var state = Mapped(extents[0]);
        long run = 0;
        foreach (var e in extents)
        {
            if (Mapped(e) != state)
                break;
            run += e.Length;
        }
        return (state, run);
    }
}
