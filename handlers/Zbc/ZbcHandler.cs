using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging;

namespace HandlerRuntime.Handlers.Zbc;

/// <summary>
/// <c>zbc/[options@]&lt;path&gt;</c>: a host-managed or host-aware zoned disk emulated on a
/// regular file (tcmu-runner's zbc handler, with durable write pointers and without its
/// reformat-on-open).
/// </summary>
public sealed class ZbcHandler : IHandler
{
    public string Subtype => "zbc";

    public string ConfigHelp => ZbcOptions.Help;

    public ConfigCheck CheckConfig(string config)
        => ZbcOptions.Parse(config, out var error) is null ? ConfigCheck.Invalid(error!) : ConfigCheck.Valid;

    public ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken)
    {
        var options = ZbcOptions.Parse(context.Config, out var error) ?? throw new HandlerConfigException(error!);
        var path = options.Path;
        if (Directory.Exists(path))
            throw new HandlerConfigException($"{path} is a directory; give the path of a file for the zbc device.");
        var length = File.Exists(path) ? new FileInfo(path).Length : -1;
        if (length <= 0)
        {
            if (context.ReadOnly)
                throw new HandlerConfigException($"{path} does not hold a zbc device yet and the LUN is read-only, so it cannot be created.");
            var layout = ZbcLayout.ForNewDevice(options, context.RequestedSize, context.RequestedBlockSize, out error)
                ?? throw new HandlerConfigException(error!);
            ZbcStore.FormatFile(path, layout, fileExistsEmpty: length == 0);
            context.Logger.LogInformation("{Path}: formatted a new zbc device: {Layout}", path, layout);
        }

        var (store, records) = ZbcStore.Open(ZbcStore.OpenFile(path, context.ReadOnly), path);
        try
        {
            if (store.Layout.Contradictions(options, context.RequestedSize, context.RequestedBlockSize) is { } contradiction)
                throw new HandlerConfigException(contradiction);
            if (options.OpenZones is { } open && open != store.Layout.OpenZones)
                context.Logger.LogInformation("{Path}: open-{Asked} is capped at {Open}, half the sequential zones", path, open, store.Layout.OpenZones);
            var device = ZbcDevice.Open(store, records, context.ReadOnly);
            context.Logger.LogInformation("{Path}: opened zbc device: {Layout}", path, store.Layout);
            return ValueTask.FromResult<IBlockDevice>(device);
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }
}
