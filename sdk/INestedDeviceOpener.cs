namespace HandlerRuntime.Sdk;

/// <summary>Opens another cfgstring as a device owned by the calling handler (stacking).</summary>
public interface INestedDeviceOpener
{
    /// <summary>
    /// Opens <paramref name="cfgstring"/> (<c>&lt;subtype&gt;/&lt;config&gt;</c>) with any handler
    /// loaded in the runtime. The caller owns the device and must dispose it.
    /// </summary>
    /// <param name="cfgstring">The nested device's cfgstring.</param>
    /// <param name="size">Requested size in bytes, or 0 for the store's own.</param>
    /// <param name="blockSize">Requested block size, or 0 for the default.</param>
    /// <param name="cancellationToken">Cancels the open.</param>
    ValueTask<IBlockDevice> OpenAsync(string cfgstring, long size, int blockSize, CancellationToken cancellationToken);
}
