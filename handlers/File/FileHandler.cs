using HandlerRuntime.Handlers.Shared;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace HandlerRuntime.Handlers.File;

/// <summary><c>file//&lt;path&gt;</c>: a regular file (or block device) served with positional I/O.</summary>
public sealed class FileHandler : IHandler
{
    public string Subtype => "file";

    public string ConfigHelp =>
        "file//<absolute path>  A regular file or block device. With a size, a missing file is created (sparse) " +
        "and a shorter one extended; without one, the file's size is used. UNMAP punches holes.";

    public ConfigCheck CheckConfig(string config)
    {
        if (string.IsNullOrEmpty(config) || config[0] != '/')
            return ConfigCheck.Invalid($"'{config}' is not an absolute path; write file//<absolute path>, e.g. file//var/lib/hrt/disk0.img.");
        if (config.EndsWith('/'))
            return ConfigCheck.Invalid($"'{config}' names a directory; give the path of a file.");
        if (Directory.Exists(config))
            return ConfigCheck.Invalid($"{config} is a directory; give the path of a file.");
        if (!System.IO.File.Exists(config) && Posix.WhyNotCreatable(config) is { } why)
            return ConfigCheck.Invalid($"{config} does not exist and cannot be created: {why}");
        return ConfigCheck.Valid;
    }

    public ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken)
    {
        if (CheckConfig(context.Config) is { IsValid: false } bad)
            throw new HandlerConfigException(bad.Reason!);
        var path = context.Config;
        var blockSize = context.RequestedBlockSize == 0 ? 512 : context.RequestedBlockSize;
        var exists = System.IO.File.Exists(path) || Directory.Exists(path);
        if (!exists && context.RequestedSize == 0)
            throw new HandlerConfigException($"{path} does not exist; give a size to create it.");
        if (!exists && context.ReadOnly)
            throw new HandlerConfigException($"{path} does not exist and the LUN is read-only, so it cannot be created.");
        if (Directory.Exists(path))
            throw new HandlerConfigException($"{path} is a directory; give the path of a file.");

        SafeFileHandle handle;
        try
        {
            handle = System.IO.File.OpenHandle(path, context.ReadOnly ? FileMode.Open : FileMode.OpenOrCreate,
                context.ReadOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HandlerConfigException($"{path} cannot be opened: {e.Message}", e);
        }

        try
        {
            var fd = (int)handle.DangerousGetHandle();
            var blockDevice = Posix.IsBlockDevice(fd);
            var size = blockDevice ? Posix.lseek(fd, 0, Posix.SeekEnd) : RandomAccess.GetLength(handle);
            if (context.RequestedSize > 0)
            {
                if (size > context.RequestedSize)
                    throw new HandlerConfigException($"{path} holds {size} bytes, more than the requested size {context.RequestedSize}; omit the size to use the whole file, or give at least {size}.");
                if (size < context.RequestedSize)
                {
                    if (blockDevice || context.ReadOnly)
                        throw new HandlerConfigException($"{path} holds {size} bytes, less than the requested size {context.RequestedSize}, and cannot be extended.");
                    RandomAccess.SetLength(handle, context.RequestedSize);
                    size = context.RequestedSize;
                }
            }
            if (size < blockSize)
                throw new HandlerConfigException($"{path} holds {size} bytes, less than one {blockSize}-byte block; give a size.");
            if (size % blockSize != 0)
                context.Logger.LogWarning("{Path}: the last {Bytes} bytes do not fill a {BlockSize}-byte block and are not served", path, size % blockSize, blockSize);
            return ValueTask.FromResult<IBlockDevice>(new FileDevice(handle, path, size, blockSize, context.ReadOnly, blockDevice));
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }
}
