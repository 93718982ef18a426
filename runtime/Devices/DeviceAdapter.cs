using System.Diagnostics;
using System.Runtime.CompilerServices;
using HandlerRuntime.Buffers;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Devices;

/// <summary>
/// The one way into a handler's device, as nbdkit's backend is: the SCSI core, the fabrics
/// that ask about capabilities and every handler that stacks on another call a device only
/// through this. It caches what the device declared, finds its optional features through
/// <see cref="IBlockDevice.GetFeature{T}"/> once, emulates what it lacks (FUA by write and
/// flush, write zeroes and WRITE SAME by buffers, and both again when the device answers
/// "not supported here"), checks ranges in debug builds and counts what passes. A nested
/// device handed to a parent handler is one of these too, so the parent sees a complete device.
/// </summary>
public sealed class DeviceAdapter : IBlockDevice
{
    private const int ChunkBytes = 1 << 20;
    private readonly Func<ValueTask>? onDispose;
    private readonly int physicalBlockSize;
    private int disposed;

    /// <param name="device">The handler's device.</param>
    /// <param name="onDispose">Runs after the device is closed (a nested device's claim is released).</param>
    /// <param name="physicalBlockSize">The LUN's physical block size in bytes, overriding the device's (0: the device's).</param>
    public DeviceAdapter(IBlockDevice device, Func<ValueTask>? onDispose = null, int physicalBlockSize = 0)
    {
        Inner = device;
        this.onDispose = onDispose;
        this.physicalBlockSize = physicalBlockSize;
        Native = device.Capabilities;
        Geometry = Shape(device.Geometry);
        ThreadModel = device.ThreadModel;
        Zoned = device.GetFeature<IZonedBlockDevice>();
        Provisioning = (Native & DeviceCapabilities.Unmap) != 0 ? device.GetFeature<IProvisioningStatus>() : null;
        CommandHook = device.GetFeature<IScsiCommandHandler>();
        Status = device.GetFeature<IHasStatus>();
        CryptoErase = device.GetFeature<ICryptoErase>();
    }

    /// <summary>The handler's device.</summary>
    public IBlockDevice Inner { get; }

    /// <summary>What the device itself declared.</summary>
    public DeviceCapabilities Native { get; }

    /// <summary>
    /// What may be asked of this adapter: the device's own capabilities plus what is emulated
    /// on any writable device (FUA, write zeroes).
    /// </summary>
    public DeviceCapabilities Capabilities => (Native & DeviceCapabilities.Write) != 0
        ? Native | DeviceCapabilities.Fua | DeviceCapabilities.WriteZeroes
        : Native;

    public DeviceGeometry Geometry { get; private set; }

    public ThreadModel ThreadModel { get; }

    public IZonedBlockDevice? Zoned { get; }

    /// <summary>Allocation status for GET LBA STATUS; null when the device is fully provisioned or cannot tell.</summary>
    public IProvisioningStatus? Provisioning { get; }

    public IScsiCommandHandler? CommandHook { get; }

    public IHasStatus? Status { get; }

    public ICryptoErase? CryptoErase { get; }

    /// <summary>What passed through, for status and metrics.</summary>
    public DeviceCounters Counters { get; } = new();

    public bool Has(DeviceCapabilities capability) => (Native & capability) == capability;

    public T? GetFeature<T>() where T : class => Inner.GetFeature<T>();

    /// <summary>Reads the geometry again (the device reported a resize).</summary>
    public void RefreshGeometry() => Geometry = Shape(Inner.Geometry);

    // A LUN's own physical block size (with an UNMAP granularity to match) beats the device's.
    private DeviceGeometry Shape(DeviceGeometry g) => physicalBlockSize > g.LogicalBlockSize ? g.WithPhysicalBlockSize(physicalBlockSize) : g;

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        CheckRange(offset, destination.Length);
        Counters.Read(destination.Length);
        return Inner.ReadAsync(offset, destination, cancellationToken);
    }

    /// <summary>
    /// Writes; with <see cref="WriteFlags.Fua"/> the data is durable when this completes,
    /// natively or by a flush after the write. A device without a volatile cache (no Flush)
    /// is durable anyway.
    /// </summary>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
    {
        CheckRange(offset, source.Length);
        if (!Has(DeviceCapabilities.Write))
            throw new ScsiException(Sense.WriteProtected); // a parent writing to a base it opened read-only
        Counters.Write(source.Length);
        if ((flags & WriteFlags.Fua) == 0 || Has(DeviceCapabilities.Fua))
            return Inner.WriteAsync(offset, source, flags, cancellationToken);
        if (!Has(DeviceCapabilities.Flush))
            return Inner.WriteAsync(offset, source, WriteFlags.None, cancellationToken);
        return WriteThenFlushAsync(offset, source, cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteThenFlushAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct)
    {
        await Inner.WriteAsync(offset, source, WriteFlags.None, ct);
        await FlushAsync(ct);
    }

    /// <summary>Makes completed writes durable; nothing to do for a device without a volatile cache.</summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        if (!Has(DeviceCapabilities.Flush))
            return default;
        Counters.Flush();
        return Inner.FlushAsync(cancellationToken);
    }

    /// <summary>
    /// Deallocates a range. UNMAP is advisory: on a device without it, or that answers "not
    /// here", nothing happens, unless it promised zeros there (then zeros are written).
    /// </summary>
    public ValueTask UnmapAsync(long offset, long length, CancellationToken cancellationToken)
    {
        CheckRange(offset, length);
        if (!Has(DeviceCapabilities.Unmap) || length == 0)
            return default;
        Counters.Unmap(length);
        return UnmapOrFallBackAsync(offset, length, cancellationToken);
    }

    private async ValueTask UnmapOrFallBackAsync(long offset, long length, CancellationToken ct)
    {
        try
        {
            await Inner.UnmapAsync(offset, length, ct);
        }
        catch (NotSupportedException) when (Has(DeviceCapabilities.UnmapReadsZeroes))
        {
            await WritePatternAsync(offset, length, default, durable: false, ct);
        }
        catch (NotSupportedException)
        {
        }
    }

    /// <summary>
    /// Makes a range read as zeros: the device's own write zeroes when it has one and it works
    /// here, else zero buffers. <see cref="ZeroFlags.MayUnmap"/> lets the device deallocate;
    /// <see cref="ZeroFlags.Fua"/> makes it durable before completion.
    /// </summary>
    public ValueTask WriteZeroesAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken)
    {
        CheckRange(offset, length);
        if (length == 0)
            return default;
        Counters.Zero(length);
        if (!Has(DeviceCapabilities.WriteZeroes))
            return WritePatternAsync(offset, length, default, (flags & ZeroFlags.Fua) != 0, cancellationToken);
        return ZeroOrFallBackAsync(offset, length, flags, cancellationToken);
    }

    private async ValueTask ZeroOrFallBackAsync(long offset, long length, ZeroFlags flags, CancellationToken ct)
    {
        try
        {
            await Inner.WriteZeroesAsync(offset, length, flags, ct);
        }
        catch (NotSupportedException)
        {
            await WritePatternAsync(offset, length, default, (flags & ZeroFlags.Fua) != 0, ct);
        }
    }

    /// <summary>
    /// Writes <paramref name="pattern"/> (one logical block; zeros when empty) over a range, a
    /// chunk at a time (WRITE SAME, write zeroes, SANITIZE OVERWRITE); with
    /// <paramref name="durable"/>, flushed at the end.
    /// </summary>
    public async ValueTask WritePatternAsync(long offset, long length, ReadOnlyMemory<byte> pattern, bool durable, CancellationToken ct)
    {
        using var buffer = BufferPool.Shared.Rent((int)Math.Min(length, ChunkBytes));
        if (pattern.IsEmpty)
            buffer.Span.Clear();
        else
            for (var at = 0; at < buffer.Length; at += pattern.Length)
                pattern.Span.CopyTo(buffer.Span[at..]);
        for (long done = 0; done < length;)
        {
            var n = (int)Math.Min(length - done, buffer.Length);
            await WriteAsync(offset + done, buffer.Memory[..n], WriteFlags.None, ct);
            done += n;
        }
        if (durable)
            await FlushAsync(ct);
    }

    public async ValueTask ResizeAsync(long newSize, CancellationToken cancellationToken)
    {
        await Inner.ResizeAsync(newSize, cancellationToken);
        RefreshGeometry();
    }

    /// <summary>Closes the device (once: a parent and the runtime may both close a nested one).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0)
            return;
        try
        {
            await Inner.DisposeAsync();
        }
        finally
        {
            if (onDispose is not null)
                await onDispose();
        }
    }

    /// <summary>Offsets and lengths are block-aligned and inside the device: the callers' promise, checked in debug builds.</summary>
    [Conditional("DEBUG")]
    private void CheckRange(long offset, long length)
    {
        var g = Geometry;
        Debug.Assert(offset >= 0 && length >= 0 && offset % g.LogicalBlockSize == 0 && length % g.LogicalBlockSize == 0,
            $"unaligned device access {offset}+{length} ({g.LogicalBlockSize}-byte blocks)");
        Debug.Assert(offset + length <= g.SizeBytes, $"device access {offset}+{length} beyond {g.SizeBytes} bytes");
    }
}

/// <summary>
/// Operations and bytes through one device, counted without a lock or an allocation
/// (one interlocked add per figure), for `hrt status` and metrics.
/// </summary>
public sealed class DeviceCounters
{
    private long reads, readBytes, writes, writtenBytes, flushes, unmaps, unmappedBytes, zeroes, zeroedBytes;

    public long Reads => Volatile.Read(ref reads);
    public long ReadBytes => Volatile.Read(ref readBytes);
    public long Writes => Volatile.Read(ref writes);
    public long WrittenBytes => Volatile.Read(ref writtenBytes);
    public long Flushes => Volatile.Read(ref flushes);
    public long Unmaps => Volatile.Read(ref unmaps);
    public long UnmappedBytes => Volatile.Read(ref unmappedBytes);
    public long Zeroes => Volatile.Read(ref zeroes);
    public long ZeroedBytes => Volatile.Read(ref zeroedBytes);

    internal void Read(long bytes)
    {
        Interlocked.Increment(ref reads);
        Interlocked.Add(ref readBytes, bytes);
    }

    internal void Write(long bytes)
    {
        Interlocked.Increment(ref writes);
        Interlocked.Add(ref writtenBytes, bytes);
    }

    internal void Flush() => Interlocked.Increment(ref flushes);

    internal void Unmap(long bytes)
    {
        Interlocked.Increment(ref unmaps);
        Interlocked.Add(ref unmappedBytes, bytes);
    }

    internal void Zero(long bytes)
    {
        Interlocked.Increment(ref zeroes);
        Interlocked.Add(ref zeroedBytes, bytes);
    }
}
