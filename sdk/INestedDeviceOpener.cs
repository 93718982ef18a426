namespace HandlerRuntime.Sdk;

/// <summary>Opens another cfgstring as a device owned by the calling handler (stacking, as nbdkit's filters and SPDK's virtual bdevs).</summary>
public interface INestedDeviceOpener
{
    /// <summary>
    /// Opens <paramref name="cfgstring"/> (<c>&lt;subtype&gt;/&lt;config&gt;</c>) with the handler
    /// loaded for its subtype. The caller owns the device and must dispose it (in its own
    /// <c>DisposeAsync</c>). The device is complete: every operation the runtime emulates (FUA,
    /// write zeroes) is available on it, its optional features come through
    /// <see cref="IBlockDevice.GetFeature{T}"/>, its events reach the LUN, and it has a state
    /// directory of its own. While it is open, its store is claimed: no other LUN or stack may
    /// open the same cfgstring.
    /// </summary>
    /// <param name="cfgstring">The nested device's cfgstring.</param>
    /// <param name="size">Requested size in bytes, or 0 for the store's own.</param>
    /// <param name="blockSize">Requested block size, or 0 for the default.</param>
    /// <param name="readOnly">Open it read-only (it is in any case when the LUN is).</param>
    /// <param name="cancellationToken">Cancels the open.</param>
    /// <exception cref="HandlerConfigException">The cfgstring is wrong, its handler is not loaded, or its store is claimed.</exception>
    ValueTask<IBlockDevice> OpenAsync(string cfgstring, long size, int blockSize, bool readOnly, CancellationToken cancellationToken);
}
