namespace HandlerRuntime.Sdk;

/// <summary>
/// Optional, on an <see cref="IBlockDevice"/> that declares <see cref="DeviceCapabilities.Unmap"/>:
/// reports which ranges are allocated, for GET LBA STATUS.
/// </summary>
public interface IProvisioningStatus
{
    /// <summary>
    /// Describes the extent starting at <paramref name="offset"/>: whether it is mapped
    /// and how many bytes (at most <paramref name="maxLength"/>, at least one block) share that state.
    /// </summary>
    ValueTask<(bool Mapped, long Length)> GetExtentAsync(long offset, long maxLength, CancellationToken cancellationToken);
}
