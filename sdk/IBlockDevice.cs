namespace HandlerRuntime.Sdk;

/// <summary>
/// An open backing store. Offsets and lengths are in bytes, always multiples of the
/// logical block size and inside the device: the runtime checks them before calling.
/// Operations not listed in <see cref="Capabilities"/> are never called.
/// Errors: throw <see cref="ScsiException"/> with a sense from <see cref="Sense"/>, or a
/// <see cref="DeviceIOException"/> with the errno the store gave (EIO becomes MEDIUM ERROR,
/// ENOSPC SPACE ALLOCATION FAILED, a lost connection NOT READY ...); a
/// <see cref="NotSupportedException"/> from write zeroes or unmap means "not here" and the
/// runtime falls back to writing zeros. Any other exception is a bug: that one command fails
/// with HARDWARE ERROR and it is logged.
/// </summary>
public interface IBlockDevice : IAsyncDisposable
{
    /// <summary>Block size and count and transfer limits. Read again after a resize.</summary>
    DeviceGeometry Geometry { get; }

    /// <summary>What the device can do; read once after open.</summary>
    DeviceCapabilities Capabilities { get; }

    /// <summary>
    /// How many operations the runtime may run at once on this device. The default,
    /// <see cref="ThreadModel.SerializeRequests"/>, is the safe one.
    /// </summary>
    ThreadModel ThreadModel => ThreadModel.SerializeRequests;

    /// <summary>
    /// An optional feature of this device (<see cref="IZonedBlockDevice"/>,
    /// <see cref="IProvisioningStatus"/>, <see cref="IScsiCommandHandler"/>, <see cref="IHasStatus"/>,
    /// <see cref="ICryptoErase"/>), or null. The runtime asks here, never by testing the device's
    /// type, so a wrapper (<see cref="DelegatingBlockDevice"/>) passes on what it wraps unless it
    /// decides otherwise. The default answers with the device itself when it implements
    /// <typeparamref name="T"/>.
    /// </summary>
    T? GetFeature<T>() where T : class => this as T;

    /// <summary>Reads <paramref name="destination"/>.Length bytes at <paramref name="offset"/>.</summary>
    ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken);

    /// <summary>
    /// Writes <paramref name="source"/> at <paramref name="offset"/>. With
    /// <see cref="WriteFlags.Fua"/> the data must be durable before the task completes.
    /// Called only with <see cref="DeviceCapabilities.Write"/>.
    /// </summary>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
        => throw new NotSupportedException("This device does not support writes.");

    /// <summary>Makes every completed write durable. Called only with <see cref="DeviceCapabilities.Flush"/>.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken)
        => throw new NotSupportedException("This device does not support flush.");

    /// <summary>
    /// Deallocates a range; later reads return zeros if <see cref="DeviceCapabilities.UnmapReadsZeroes"/>
    /// is declared, otherwise unspecified data. Called only with <see cref="DeviceCapabilities.Unmap"/>.
    /// </summary>
    ValueTask UnmapAsync(long offset, long length, CancellationToken cancellationToken)
        => throw new NotSupportedException("This device does not support unmap.");

    /// <summary>
    /// Makes a range read as zeros, deallocating it if <see cref="ZeroFlags.MayUnmap"/> allows.
    /// Called only with <see cref="DeviceCapabilities.WriteZeroes"/>; otherwise the runtime writes zero buffers.
    /// </summary>
    ValueTask WriteZeroesAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken)
        => throw new NotSupportedException("This device does not support write zeroes.");

    /// <summary>
    /// Changes the device size. The runtime quiesces the LUN first: no other operation
    /// is in flight during this call. Called only with <see cref="DeviceCapabilities.Resize"/>.
    /// </summary>
    ValueTask ResizeAsync(long newSize, CancellationToken cancellationToken)
        => throw new NotSupportedException("This device cannot be resized.");
}
