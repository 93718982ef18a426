using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Ram;

/// <summary><c>ram/@</c> (anonymous memory) and <c>ram//&lt;path&gt;</c> (a memory-mapped file).</summary>
public sealed class RamHandler : IHandler
{
    public string Subtype => "ram";

    public string ConfigHelp =>
        "ram/@  Anonymous memory, lost at exit; a size is required. " +
        "ram//<absolute path>  A memory-mapped file, written back on SYNCHRONIZE CACHE (msync); " +
        "size from the file, or given (a missing file is created).";

    public ConfigCheck CheckConfig(string config)
    {
        if (config == "@")
            return ConfigCheck.Valid;
        if (config.Length > 1 && config[0] == '/' && !config.EndsWith('/'))
            return ConfigCheck.Valid;
        return ConfigCheck.Invalid($"'{config}' is neither '@' nor an absolute file path; write ram/@ for anonymous memory or ram//<path> to map a file.");
    }

    public ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken)
    {
        if (CheckConfig(context.Config) is { IsValid: false } bad)
            throw new HandlerConfigException(bad.Reason!);
        var blockSize = context.RequestedBlockSize == 0 ? 512 : context.RequestedBlockSize;
        if (context.Config == "@")
        {
            if (context.RequestedSize <= 0)
                throw new HandlerConfigException("ram/@ has no backing store to take a size from; give a size (for example --size 256M).");
            return ValueTask.FromResult<IBlockDevice>(MappedMemoryDevice.Anonymous(context.RequestedSize, blockSize));
        }
        var path = context.Config;
        if (!System.IO.File.Exists(path) && context.RequestedSize <= 0)
            throw new HandlerConfigException($"{path} does not exist; give a size to create it.");
        return ValueTask.FromResult<IBlockDevice>(MappedMemoryDevice.OfFile(path, context.RequestedSize, blockSize, context.ReadOnly));
    }
}
