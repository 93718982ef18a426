using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Rbd;

/// <summary>
/// rbd/&lt;pool&gt;/&lt;image&gt;[;osd_op_timeout=N][;conf=&lt;path&gt;][;id=&lt;client id&gt;]: a Ceph RBD image
/// through librbd, as tcmu-runner's rbd handler serves it. See handlers/Rbd/README.md.
/// </summary>
public sealed class RbdHandler : IHandler, IReachabilityCheck
{
    /// <summary>How long check-config --reach waits for the monitors.</summary>
    private const int ReachTimeoutSeconds = 5;

    public string Subtype => "rbd";

    public string ConfigHelp => RbdConfig.Help;

    public ConfigCheck CheckConfig(string config)
        => RbdConfig.TryParse(config, out _, out var error) ? ConfigCheck.Valid : ConfigCheck.Invalid(error!);

    public async ValueTask<ConfigCheck> CheckReachableAsync(string config, CancellationToken cancellationToken)
    {
        if (!RbdConfig.TryParse(config, out var parsed, out var error))
            return ConfigCheck.Invalid(error!);
        if (!Native.NativeLibraries.Available(out var missing))
            return ConfigCheck.Invalid(missing);
        var key = new ClusterKey(parsed.EffectiveConfPath, parsed.EffectiveClientId, parsed.OsdOpTimeoutSeconds);
        try
        {
            // A connection of its own, never shared, given up after a few seconds; the image is not opened.
            var connection = await Task.Run(() => ClusterConnection.Connect(key, ReachTimeoutSeconds, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance), cancellationToken);
            connection.Handle.Dispose();
            return ConfigCheck.Valid;
        }
        catch (RbdException e)
        {
            return ConfigCheck.Invalid(e.Message);
        }
    }

    public async ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken)
    {
        if (!RbdConfig.TryParse(context.Config, out var config, out var error))
            throw new HandlerConfigException(error!);
        if (!Native.NativeLibraries.Available(out var missing))
            throw new HandlerConfigException(missing);
        var blockSize = context.RequestedBlockSize == 0 ? 512 : context.RequestedBlockSize;
        if (!DeviceGeometry.IsValidBlockSize(blockSize))
            throw new HandlerConfigException($"A block size of {blockSize} bytes is not one SCSI initiators accept; use 512, 1024, 2048 or 4096.");
        try
        {
            return await RbdDevice.OpenAsync(config, context.RequestedSize, blockSize, context.ReadOnly, context.Logger, context.Events, cancellationToken);
        }
        catch (RbdException e)
        {
            throw new HandlerConfigException(e.Message, e);
        }
    }
}
