namespace HandlerRuntime.Sdk;

/// <summary>
/// An open backing store. Offsets and lengths are in bytes, always multiples of the
/// logical block size and inside the device: the runtime checks them before calling.
/// Operations not listed in <see cref="Capabilities"/> are never called.
/// Errors: throw <see cref="ScsiException"/> with a sense from <see cref="Sense"/>;
/// any other exception fails that one command with HARDWARE ERROR and is logged.
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
