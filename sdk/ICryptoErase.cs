namespace HandlerRuntime.Sdk;

/// <summary>
/// Optional feature (through <see cref="IBlockDevice.GetFeature{T}"/>): the device encrypts
/// what it stores and can make all of it unreadable at once by replacing its key. The runtime
/// then offers SANITIZE CRYPTO ERASE (SBC-4 4.11) and calls this, with no other command running.
/// </summary>
public interface ICryptoErase
{
    /// <summary>Discards the key the data was written with and starts using a new one; durable before it returns.</summary>
    ValueTask ChangeKeyAsync(CancellationToken cancellationToken);
}
