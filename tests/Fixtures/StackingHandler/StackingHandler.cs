using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Fixtures;

/// <summary>
/// <c>vstack/&lt;inner cfgstring&gt;</c>: a pass-through filter on <see cref="DelegatingBlockDevice"/>
/// that declares nothing of its own, so everything a test sees through it (capabilities,
/// the inner device's command hook and status, its events) comes from the device below.
/// </summary>
public sealed class StackingHandler : IHandler
{
    public string Subtype => "vstack";

    public string ConfigHelp => "vstack/<cfgstring>  test filter that passes everything through";

    public ConfigCheck CheckConfig(string config)
        => config.Contains('/') ? ConfigCheck.Valid : ConfigCheck.Invalid("give the cfgstring to stack on");

    public async ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken)
        => new PassThrough(await context.NestedDevices.OpenAsync(context.Config, context.RequestedSize, context.RequestedBlockSize, readOnly: false, cancellationToken));

    private sealed class PassThrough(IBlockDevice inner) : DelegatingBlockDevice(inner);
}
