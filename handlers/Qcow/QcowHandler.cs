using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Qcow;

/// <summary>
/// <c>qcow//&lt;path&gt;[?cache=&lt;size&gt;]</c>: a QEMU qcow2 (v2 or v3) or legacy qcow v1 image
/// served as a disk. The LUN's size is the image's virtual size.
/// </summary>
public sealed class QcowHandler : IHandler
{
    public string Subtype => "qcow";

    public string ConfigHelp =>
        "qcow//<absolute path>[?cache=<size>]  A QEMU qcow2 image (version 2 or 3) or legacy qcow (version 1) image; " +
        "backing chains of qcow2, qcow and raw files are followed (read-only). The LUN's size " +
        "is the image's virtual size (resize with qemu-img resize). cache= sets the L2 and refcount metadata cache, " +
        $"64K to 1G (default {QcowConfig.DefaultCacheBytes >> 20}M), e.g. qcow//var/lib/hrt/vm.qcow2?cache=16M.";

    public ConfigCheck CheckConfig(string config)
        => QcowConfig.TryParse(config, out _, out var error) ? ConfigCheck.Valid : ConfigCheck.Invalid(error!);

    public async ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken)
    {
        if (!QcowConfig.TryParse(context.Config, out var config, out var error))
            throw new HandlerConfigException(error!);
        var path = config!.Path;
        var blockSize = context.RequestedBlockSize == 0 ? 512 : context.RequestedBlockSize;
        if (Directory.Exists(path))
            throw new HandlerConfigException($"{path} is a directory; give the path of a qcow2 or qcow image file.");
        if (!System.IO.File.Exists(path))
            throw new HandlerConfigException($"{path} does not exist; create it first, e.g. qemu-img create -f qcow2 {path} 10G.");

        IImage image;
        try
        {
            image = await ImageOpener.OpenAsync(path, !context.ReadOnly, config.CacheBytes, context.Logger);
        }
        catch (InvalidDataException e)
        {
            throw new HandlerConfigException($"{path} cannot be served: {e.Message}", e);
        }
        try
        {
            var size = image.VirtualSize;
            if (context.RequestedSize != 0 && context.RequestedSize != size)
                throw new HandlerConfigException($"{path} has a virtual size of {size} bytes, not the requested {context.RequestedSize}; " +
                    "a qcow LUN always has its image's size, so leave out the size (or change the image with qemu-img resize).");
            if (size < blockSize || size % blockSize != 0)
                throw new HandlerConfigException($"{path} has a virtual size of {size} bytes, which is not a whole number of {blockSize}-byte blocks; " +
                    "choose a block size that divides it or resize the image with qemu-img resize.");
            return new QcowDevice(image, blockSize, context.Logger);
        }
        catch
        {
            await image.DisposeAsync();
            throw;
        }
    }
}
