using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Error;

/// <summary>
/// <c>error/[options]@&lt;cfgstring&gt;</c>: a filter that injects failures (a store's errno, a bug,
/// a slow failure, a short read) into the device it wraps, as nbdkit's error filter, for fault
/// tests of every layer above it. With <c>file=</c> a test switches the faults on and off at run
/// time by creating and removing that file.
/// </summary>
public sealed class ErrorHandler : IHandler
{
    public string Subtype => "error";

    public string ConfigHelp => ErrorOptions.Help;

    public ConfigCheck CheckConfig(string config)
        => ErrorOptions.Parse(config, out var error) is null ? ConfigCheck.Invalid(error) : ConfigCheck.Valid;

    public async ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken)
    {
        var options = ErrorOptions.Parse(context.Config, out var error) ?? throw new HandlerConfigException(error);
        var inner = await context.NestedDevices.OpenAsync(options.Inner, context.RequestedSize, context.RequestedBlockSize, context.ReadOnly, cancellationToken);
        if (options.RangeStart >= inner.Geometry.SizeBytes)
        {
            await inner.DisposeAsync();
            throw new HandlerConfigException($"error: range {options.RangeStart}-{options.RangeEnd} starts beyond the end of {options.Inner} ({inner.Geometry.SizeBytes} bytes), so nothing would fail; give a range inside the device.");
        }
        return new ErrorDevice(inner, options);
    }
}
