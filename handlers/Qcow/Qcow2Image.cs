using System.Buffers.Binary;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging;

namespace HandlerRuntime.Handlers.Qcow;

/// <summary>
/// A qcow2 image (version 2 or 3), readable and, unless read-only, writable.
/// Locking: <see cref="meta"/> guards every piece of metadata (L1, cache, refcounts);
/// <see cref="ranges"/> guards guest clusters, so that data I/O to host clusters a
/// command owns can run outside the metadata lock. Files of this partial class:
/// mapping and reads, writes, zeroing, write-back, refcount rebuild.
/// </summary>
internal sealed partial class Qcow2Image : IImage
{
    private const ulong Copied = 1UL << 63;
    private const ulong CompressedFlag = 1UL << 62;
    private const ulong ZeroFlag = 1;
    private const ulong OffsetMask = 0x00FFFFFFFFFFFE00UL;
    private const uint AllSubclusters = 0xFFFFFFFF;

    private readonly ImageStorage file;
    private readonly Qcow2Header header;
    private readonly ILogger log;
    private readonly IImage? backing;
    private readonly int clusterBits;
    private readonly int clusterSize;
    private readonly bool extended;
    private readonly int l2EntryBytes;
    private readonly int l2Bits; // log2 of entries per L2 table
    private readonly int subclusterBits;
    private readonly ulong[] l1;
    private readonly SortedSet<int> dirtyL1 = [];
    private readonly MetadataCache cache;
    private readonly SemaphoreSlim meta = new(1, 1);
    private readonly RangeLock ranges = new();
    private Refcounts? refcounts;

    private Qcow2Image(ImageStorage file, Qcow2Header header, ulong[] l1, IImage? backing, long cacheBytes, ILogger log)
    {
        this.file = file;
        this.header = header;
        this.l1 = l1;
        this.backing = backing;
        this.log = log;
        clusterBits = header.ClusterBits;
        clusterSize = header.ClusterSize;
        extended = header.ExtendedL2;
        l2EntryBytes = extended ? 16 : 8;
        l2Bits = clusterBits - (extended ? 4 : 3);
        subclusterBits = extended ? clusterBits - 5 : clusterBits;
        cache = new MetadataCache(file, clusterSize, cacheBytes, WriteBackLockedAsync);
    }

    public string Path => file.Name;

    public long VirtualSize => header.VirtualSize;

    public bool Writable => refcounts is not null;

    public IImage? Backing => backing;

    public int ClusterSize => clusterSize;

    /// <summary>The allocation unit: a subcluster with extended L2 entries, else a cluster.</summary>
    public int AllocationUnit => 1 << subclusterBits;

    /// <summary>Whether deallocated and zeroed ranges read back as zeros (v3 zero flags, or nothing behind the image).</summary>
    public bool UnmapReadsZeroes => header.Version >= 3 || backing is null;

    /// <summary>Frees skipped because the cluster's refcount was already 0 (a damaged image); tests expect none.</summary>
    public int InconsistentFrees => refcounts?.InconsistentFrees ?? 0;

    /// <summary>
    /// Opens a qcow2 image on <paramref name="file"/>. <paramref name="openBacking"/> opens the
    /// backing chain from the parsed header. With the corrupt bit set the image opens read-only;
    /// opened for writing, unknown autoclear bits are cleared and a dirty image gets its
    /// refcounts rebuilt before anything else.
    /// </summary>
    public static async ValueTask<Qcow2Image> OpenAsync(ImageStorage file, bool writable, long cacheBytes, ILogger log,
        Func<Qcow2Header, ValueTask<IImage?>> openBacking)
    {
        var head = new byte[512];
        await file.ReadAsync(0, head);
        var bits = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(20));
        var first = new byte[bits is >= 9 and <= 21 ? 1 << (int)bits : 512];
        await file.ReadAsync(0, first);
        var header = Qcow2Header.Parse(first, file.Name);
        if (writable && (header.Incompatible & Qcow2Header.IncompatibleCorrupt) != 0)
        {
            log.LogWarning("{Path} is marked corrupt: serving it read-only; repair it with qemu-img check -r all to write to it", file.Name);
            writable = false;
        }
        if (writable && !file.Writable)
            throw new InvalidOperationException("a writable image needs writable storage");
        var l1 = await file.ReadTableAsync(header.L1Offset, header.L1Size);
        var backing = await openBacking(header);
        var image = new Qcow2Image(file, header, l1, backing, cacheBytes, log);
        try
        {
            if (writable)
                await image.PrepareForWritesAsync();
        }
        catch
        {
            await image.DisposeAsync();
            throw;
        }
        return image;
    }

    private async ValueTask PrepareForWritesAsync()
    {
        if (header.Autoclear != 0)
        {
            // Autoclear features (bitmaps, raw data file) describe data this handler does not keep up to date.
            log.LogInformation("{Path}: clearing autoclear feature bits 0x{Bits:x} before writing", file.Name, header.Autoclear);
            await file.WriteAsync(Qcow2Header.AutoclearFieldOffset, new byte[8]);
            file.Sync();
            header.Autoclear = 0;
        }
        refcounts = await Refcounts.LoadAsync(file, header, cache);
        if ((header.Incompatible & Qcow2Header.IncompatibleDirty) != 0)
        {
            log.LogWarning("{Path} was not closed cleanly (dirty bit set): rebuilding its refcounts", file.Name);
            await RebuildRefcountsAsync();
            header.Incompatible &= ~Qcow2Header.IncompatibleDirty;
            var field = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(field, header.Incompatible);
            await file.WriteAsync(Qcow2Header.IncompatibleFieldOffset, field);
            file.Sync();
        }
    }

    private void SetL1(int index, ulong value)
    {
        l1[index] = value;
        dirtyL1.Add(index);
    }

    private (ulong Entry, ulong Bitmap) ReadEntry(byte[] table, int index)
    {
        var at = index * l2EntryBytes;
        var entry = BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(at));
        return (entry, extended ? BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(at + 8)) : 0);
    }

    private void SetEntry(MetadataCache.Pin table, int index, ulong entry, ulong bitmap)
    {
        var at = index * l2EntryBytes;
        BinaryPrimitives.WriteUInt64BigEndian(table.Data.AsSpan(at), entry);
        if (extended)
            BinaryPrimitives.WriteUInt64BigEndian(table.Data.AsSpan(at + 8), bitmap);
        table.MarkDirty();
    }

    /// <summary>Host byte range of a compressed cluster: offset and length as the descriptor gives them.</summary>
    private (long Offset, int Length) CompressedRange(ulong entry)
    {
        var x = 62 - (clusterBits - 8);
        var offset = (long)(entry & ((1UL << x) - 1));
        var sectors = (int)((entry >> x) & ((1UL << (clusterBits - 8)) - 1)) + 1;
        return (offset, sectors * 512 - (int)(offset & 511));
    }

    private long CheckedHost(ulong entry, string what)
    {
        var host = (long)(entry & OffsetMask);
        if ((host & (clusterSize - 1)) != 0)
            throw new InvalidDataException($"{file.Name}: {what} points at 0x{host:x}, which is not cluster aligned; the image is damaged.");
        return host;
    }

    /// <summary>Queues the release of what an old L2 entry referenced. Call after the entry was replaced.</summary>
    private void DropReference(ulong entry)
    {
        if ((entry & CompressedFlag) != 0)
        {
            var (offset, length) = CompressedRange(entry);
            refcounts!.QueueFree(offset, length);
        }
        else if ((entry & OffsetMask) != 0)
            refcounts!.QueueFree((long)(entry & OffsetMask), clusterSize);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (Writable)
                await FlushAsync(CancellationToken.None);
        }
        finally
        {
            file.Dispose();
            if (backing is not null)
                await backing.DisposeAsync();
        }
    }
}
