using HandlerRuntime.Handlers.Shared;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging;

namespace HandlerRuntime.Handlers.Cow;

/// <summary>
/// <c>cow/[file=&lt;path&gt;][,granularity=&lt;bytes&gt;]@&lt;cfgstring&gt;</c>: a copy-on-write overlay over a
/// device it opens read-only (nbdkit's cow filter): writes, unmaps and write zeroes land in the
/// overlay, reads merge overlay and base, the base never changes. The overlay is in memory
/// (lost when the LUN closes) or in a file whose block map is made durable by every flush, so a
/// restart or a hot upgrade keeps it.
/// </summary>
public sealed class CowHandler : IHandler
{
    internal const int DefaultGranularity = 64 << 10;
    private static readonly string[] Keys = ["file", "granularity"];

    public string Subtype => "cow";

    public string ConfigHelp =>
        "cow/[file=<path>][,granularity=<bytes>]@<cfgstring>  A copy-on-write overlay over the device it wraps, which it opens read-only: " +
        "writes, unmaps and write zeroes land in the overlay, reads merge it with the base. In memory by default (gone when the LUN " +
        "closes, a hot upgrade included), or in file (its block map, in <path>.map, made durable by every SYNCHRONIZE CACHE, so the overlay " +
        "survives restarts). granularity: the overlay's block, a power of two from 512 to 4M (default 64K); smaller writes copy the rest " +
        "of their block from the base. Example: cow/file=/var/lib/hrt/vm1.cow@file//images/golden.img";

    public ConfigCheck CheckConfig(string config)
        => Parse(config, out var error) is null ? ConfigCheck.Invalid(error) : ConfigCheck.Valid;

    internal static CowOptions? Parse(string config, out string error)
    {
        if (!FilterConfig.TryParse("cow", config, Keys, out var parsed, out error))
            return null;
        var options = new CowOptions(parsed.Inner, null, null);
        if (parsed.Options.TryGetValue("file", out var file))
        {
            if (!Path.IsPathFullyQualified(file) || file.EndsWith('/'))
            {
                error = $"cow: file '{file}' is not an absolute path of a file; write file=<absolute path> for an overlay that survives restarts, or leave it out for one in memory.";
                return null;
            }
            options = options with { File = file };
        }
        if (parsed.Options.TryGetValue("granularity", out var text))
        {
            if (!FilterOptions.TryBytes(text, out var g) || g < 512 || g > 4 << 20 || (g & (g - 1)) != 0)
            {
                error = $"cow: granularity '{text}' is not a power of two from 512 to 4M bytes (K and M suffixes), e.g. granularity=64K.";
                return null;
            }
            options = options with { Granularity = (int)g };
        }
        return options;
    }

    public async ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken)
    {
        var options = Parse(context.Config, out var error) ?? throw new HandlerConfigException(error);
        // The base is only ever read: opened read-only whatever the LUN is.
        var baseDevice = await context.NestedDevices.OpenAsync(options.Inner, context.RequestedSize, context.RequestedBlockSize, readOnly: true, cancellationToken);
        try
        {
            var g = baseDevice.Geometry;
            var granularity = options.Granularity ?? Math.Max(DefaultGranularity, g.LogicalBlockSize);
            if (granularity < g.LogicalBlockSize)
                throw new HandlerConfigException($"cow: granularity {granularity} is smaller than the {g.LogicalBlockSize}-byte blocks of {options.Inner}; give at least {g.LogicalBlockSize}.");
            Overlay overlay;
            if (options.File is { } path)
            {
                overlay = FileOverlay.Open(path, g.SizeBytes, options.Granularity, granularity, context.ReadOnly);
                context.Logger.LogInformation("cow: overlay {Path} over {Base}: {Chunks} of {Total} blocks of {Granularity} bytes in it",
                    path, options.Inner, overlay.ChunksInOverlay, overlay.Chunks, overlay.ChunkBytes);
            }
            else
            {
                overlay = new MemoryOverlay(g.SizeBytes, granularity);
                context.Logger.LogInformation("cow: overlay in memory over {Base}; what is written is lost when the LUN closes (a restart or a hot upgrade of any plugin in its stack)", options.Inner);
            }
            return new CowDevice(baseDevice, overlay, context.ReadOnly);
        }
        catch (InvalidDataException e)
        {
            await baseDevice.DisposeAsync();
            throw new HandlerConfigException(e.Message, e);
        }
        catch
        {
            await baseDevice.DisposeAsync();
            throw;
        }
    }
}

/// <summary>The parsed config; a null <see cref="Granularity"/> was not given (a file overlay then keeps its own).</summary>
internal sealed record CowOptions(string Inner, string? File, int? Granularity);
