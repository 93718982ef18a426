using System.Security.Cryptography;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging;

namespace HandlerRuntime.Handlers.Crypt;

/// <summary>
/// <c>crypt/@&lt;cfgstring&gt;</c>: AES-256-XTS over another device, with the key generated on the
/// first open and kept in the LUN's state directory, so that SANITIZE CRYPTOGRAPHIC ERASE can be
/// offered honestly: it replaces the key.
/// </summary>
public sealed class CryptHandler : IHandler
{
    public string Subtype => "crypt";

    public string ConfigHelp =>
        "crypt/@<cfgstring>  Encrypts the device it wraps with AES-256-XTS (data unit = logical block, tweak = block number). " +
        "The 512-bit key is made on the first open and kept in the LUN's state directory (xts-key, mode 0600): deleting the LUN " +
        "or that file makes the data unreadable. SANITIZE CRYPTO ERASE replaces the key. Example: crypt/@file//var/lib/hrt/secret.img";

    public ConfigCheck CheckConfig(string config)
        => FilterConfig.TryParse("crypt", config, [], out _, out var error) ? ConfigCheck.Valid : ConfigCheck.Invalid(error);

    public async ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken)
    {
        if (!FilterConfig.TryParse("crypt", context.Config, [], out var parsed, out var error))
            throw new HandlerConfigException(error);
        byte[] key;
        bool created;
        try
        {
            key = CryptKeyFile.LoadOrCreate(context.StateDirectory, out created);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            throw new HandlerConfigException(e is InvalidDataException ? e.Message : $"crypt: the key in {context.StateDirectory} cannot be read or written: {e.Message}", e);
        }
        try
        {
            var inner = await context.NestedDevices.OpenAsync(parsed.Inner, context.RequestedSize, context.RequestedBlockSize, context.ReadOnly, cancellationToken);
            if (inner.Geometry.LogicalBlockSize % 16 != 0)
            {
                await inner.DisposeAsync();
                throw new HandlerConfigException($"crypt: {parsed.Inner} has {inner.Geometry.LogicalBlockSize}-byte blocks; XTS needs a multiple of 16.");
            }
            if (created)
                context.Logger.LogInformation("crypt: made a new AES-256-XTS key in {Path}; without that file the data on {Inner} cannot be read", Path.Combine(context.StateDirectory, CryptKeyFile.FileName), parsed.Inner);
            return new CryptDevice(inner, key, Path.Combine(context.StateDirectory, CryptKeyFile.FileName));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
    }
}
