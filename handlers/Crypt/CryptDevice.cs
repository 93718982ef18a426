using System.Buffers;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Crypt;

/// <summary>
/// AES-256-XTS over the device it wraps: data unit = logical block, tweak = block number, so the
/// geometry is the inner device's and any block can be read or written alone. Writes are
/// enciphered into pooled buffers (the caller's data is never touched); reads are deciphered in
/// the caller's buffer after the inner device filled it. Zeros written through this device are
/// enciphered zeros, so it declares neither write zeroes nor that unmapped blocks read as zeros
/// (the runtime then writes zero buffers through it). A crypto erase replaces the key: what was
/// written before deciphers to noise.
/// </summary>
internal sealed class CryptDevice : DelegatingBlockDevice, ICryptoErase, IHasStatus
{
    private readonly string keyPath;
    private XtsAes cipher;
    private DateTime keySince;

    public CryptDevice(IBlockDevice inner, byte[] key, string keyPath) : base(inner)
    {
        this.keyPath = keyPath;
        cipher = new XtsAes(key);
        keySince = File.GetLastWriteTimeUtc(keyPath);
        // Anything that writes zeros or lets the store answer zeros for us would bypass the cipher.
        Capabilities = inner.Capabilities & ~(DeviceCapabilities.WriteZeroes | DeviceCapabilities.UnmapReadsZeroes);
    }

    public override DeviceCapabilities Capabilities { get; }

    /// <summary>A command handler below would see and store plaintext: not passed on.</summary>
    public override T? GetFeature<T>() where T : class
        => typeof(T) == typeof(IScsiCommandHandler) ? null : base.GetFeature<T>();

    private int BlockBytes => Geometry.LogicalBlockSize;

    public override ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var read = Inner.ReadAsync(offset, destination, cancellationToken);
        if (!read.IsCompletedSuccessfully)
            return DecryptAfterAsync(read, offset, destination);
        read.GetAwaiter().GetResult();
        Decrypt(offset, destination.Span);
        return default;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask DecryptAfterAsync(ValueTask read, long offset, Memory<byte> destination)
    {
        await read;
        Decrypt(offset, destination.Span);
    }

    private void Decrypt(long offset, Span<byte> data)
        => cipher.Decrypt((ulong)(offset / BlockBytes), BlockBytes, data, data);

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
    {
        var ciphertext = ArrayPool<byte>.Shared.Rent(source.Length);
        ValueTask write;
        try
        {
            cipher.Encrypt((ulong)(offset / BlockBytes), BlockBytes, source.Span, ciphertext);
            write = Inner.WriteAsync(offset, ciphertext.AsMemory(0, source.Length), flags, cancellationToken);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(ciphertext);
            throw;
        }
        if (!write.IsCompletedSuccessfully)
            return ReturnAfterAsync(write, ciphertext);
        ArrayPool<byte>.Shared.Return(ciphertext);
        return default;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private static async ValueTask ReturnAfterAsync(ValueTask write, byte[] ciphertext)
    {
        try
        {
            await write;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(ciphertext);
        }
    }

    /// <summary>
    /// SANITIZE CRYPTOGRAPHIC ERASE: a new random key, durable in the state directory before it is
    /// used, and the old one forgotten. The runtime calls this with no other command running.
    /// </summary>
    public ValueTask ChangeKeyAsync(CancellationToken cancellationToken)
    {
        var key = RandomNumberGenerator.GetBytes(CryptKeyFile.KeyBytes);
        try
        {
            CryptKeyFile.Write(keyPath, key);
            var old = cipher;
            cipher = new XtsAes(key);
            keySince = DateTime.UtcNow;
            old.Dispose();
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
        return default;
    }

    public JsonObject GetStatus() => new()
    {
        ["filter"] = "crypt",
        ["cipher"] = "aes-256-xts",
        ["keyFile"] = keyPath,
        ["keySince"] = keySince.ToString("O"),
        ["inner"] = Inner.GetFeature<IHasStatus>()?.GetStatus(),
    };

    public override async ValueTask DisposeAsync()
    {
        try
        {
            await base.DisposeAsync();
        }
        finally
        {
            cipher.Dispose();
        }
    }
}
