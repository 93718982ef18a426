namespace HandlerRuntime.Sdk;

/// <summary>What a device can do, declared once after open (nbdkit's can_* callbacks).</summary>
[Flags]
public enum DeviceCapabilities
{
    /// <summary>Read-only.</summary>
    None = 0,
    /// <summary><see cref="IBlockDevice.WriteAsync"/> is available.</summary>
    Write = 1 << 0,
    /// <summary><see cref="IBlockDevice.FlushAsync"/> is available (the device has a volatile cache).</summary>
    Flush = 1 << 1,
    /// <summary>The device honours <see cref="WriteFlags.Fua"/> natively; otherwise the runtime follows a FUA write with a flush.</summary>
    Fua = 1 << 2,
    /// <summary><see cref="IBlockDevice.UnmapAsync"/> is available (thin provisioning).</summary>
    Unmap = 1 << 3,
    /// <summary>Unmapped ranges read back as zeros (LBPRZ).</summary>
    UnmapReadsZeroes = 1 << 4,
    /// <summary><see cref="IBlockDevice.WriteZeroesAsync"/> is available.</summary>
    WriteZeroes = 1 << 5,
    /// <summary><see cref="IBlockDevice.ResizeAsync"/> is available.</summary>
    Resize = 1 << 6,
    /// <summary>The medium rotates (VPD B1 reports it; otherwise non-rotating).</summary>
    Rotational = 1 << 7,
    /// <summary>
    /// <see cref="IBlockDevice.ReadAsync"/> and <see cref="IBlockDevice.WriteAsync"/> never wait
    /// for a disk on the caller's thread (they copy memory, or hand the waiting to other threads),
    /// so the runtime may run READ and WRITE on its network threads instead of hopping to the
    /// thread pool. Declare it only when that holds for every call, FUA included.
    /// </summary>
    NonBlocking = 1 << 8,
}
