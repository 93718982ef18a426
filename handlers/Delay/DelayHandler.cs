using System.Diagnostics;
using System.Text.Json.Nodes;
using HandlerRuntime.Handlers.Shared;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Delay;

/// <summary>
/// <c>delay/[ms=N][,read-ms=N][,write-ms=N][,flush-ms=N]@&lt;cfgstring&gt;</c>: adds latency to every
/// operation of the device it wraps (nbdkit's delay filter), to test timeouts and queueing above
/// it. The waits are timers: no thread is held while an operation is delayed.
/// </summary>
public sealed class DelayHandler : IHandler
{
    private static readonly string[] Keys = ["ms", "read-ms", "write-ms", "flush-ms"];

    public string Subtype => "delay";

    public string ConfigHelp =>
        "delay/[ms=<n>][,read-ms=<n>][,write-ms=<n>][,flush-ms=<n>]@<cfgstring>  Adds latency before each operation of the device it wraps: " +
        "ms to every operation (reads, writes, flushes, unmaps, write zeroes), read-ms, write-ms and flush-ms instead of it for those. " +
        "Example: delay/read-ms=5,write-ms=20@file//var/lib/hrt/disk0.img";

    public ConfigCheck CheckConfig(string config)
        => Parse(config, out var error) is null ? ConfigCheck.Invalid(error) : ConfigCheck.Valid;

    public async ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken)
    {
        var delays = Parse(context.Config, out var error) ?? throw new HandlerConfigException(error);
        var inner = await context.NestedDevices.OpenAsync(delays.Inner, context.RequestedSize, context.RequestedBlockSize, context.ReadOnly, cancellationToken);
        return new DelayDevice(inner, delays);
    }

    internal static Delays? Parse(string config, out string error)
    {
        if (!FilterConfig.TryParse("delay", config, Keys, out var parsed, out error))
            return null;
        var ms = new Dictionary<string, int>();
        foreach (var (key, value) in parsed.Options)
        {
            if (!FilterOptions.TryMilliseconds(value, out var n))
            {
                error = $"delay: {key} '{value}' is not a whole number of milliseconds from 0 to 3600000.";
                return null;
            }
            ms[key] = n;
        }
        if (ms.Count == 0)
        {
            error = "delay: no delay is given; write ms=<n> (every operation) or read-ms=, write-ms=, flush-ms=, e.g. delay/ms=10@file//var/lib/hrt/disk0.img.";
            return null;
        }
        var all = ms.GetValueOrDefault("ms");
        return new Delays(parsed.Inner, ms.GetValueOrDefault("read-ms", all), ms.GetValueOrDefault("write-ms", all), ms.GetValueOrDefault("flush-ms", all), all);
    }
}

/// <summary>Milliseconds to wait before each kind of operation; <see cref="Other"/> is for unmap and write zeroes.</summary>
internal sealed record Delays(string Inner, int Read, int Write, int Flush, int Other);

internal sealed class DelayDevice(IBlockDevice inner, Delays delays) : DelegatingBlockDevice(inner), IHasStatus
{
    public override ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
        => delays.Read == 0 ? Inner.ReadAsync(offset, destination, cancellationToken) : ReadLaterAsync(offset, destination, cancellationToken);

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
        => delays.Write == 0 ? Inner.WriteAsync(offset, source, flags, cancellationToken) : WriteLaterAsync(offset, source, flags, cancellationToken);

    public override ValueTask FlushAsync(CancellationToken cancellationToken)
        => delays.Flush == 0 ? Inner.FlushAsync(cancellationToken) : FlushLaterAsync(cancellationToken);

    public override async ValueTask UnmapAsync(long offset, long length, CancellationToken cancellationToken)
    {
        await WaitAsync(delays.Other, cancellationToken);
        await Inner.UnmapAsync(offset, length, cancellationToken);
    }

    public override async ValueTask WriteZeroesAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken)
    {
        await WaitAsync(delays.Other, cancellationToken);
        await Inner.WriteZeroesAsync(offset, length, flags, cancellationToken);
    }

    private async ValueTask ReadLaterAsync(long offset, Memory<byte> destination, CancellationToken ct)
    {
        await WaitAsync(delays.Read, ct);
        await Inner.ReadAsync(offset, destination, ct);
    }

    private async ValueTask WriteLaterAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken ct)
    {
        await WaitAsync(delays.Write, ct);
        await Inner.WriteAsync(offset, source, flags, ct);
    }

    private async ValueTask FlushLaterAsync(CancellationToken ct)
    {
        await WaitAsync(delays.Flush, ct);
        await Inner.FlushAsync(ct);
    }

    /// <summary>
    /// At least <paramref name="ms"/> milliseconds by the monotonic clock: a timer may fire a little
    /// early (the timer queue ticks coarsely), so the rest is waited again.
    /// </summary>
    private static async ValueTask WaitAsync(int ms, CancellationToken ct)
    {
        var start = Stopwatch.GetTimestamp();
        for (var left = ms; left > 0; left = ms - (int)Stopwatch.GetElapsedTime(start).TotalMilliseconds)
            await Task.Delay(left, ct);
    }

    public JsonObject GetStatus() => new()
    {
        ["filter"] = "delay",
        ["readMs"] = delays.Read,
        ["writeMs"] = delays.Write,
        ["flushMs"] = delays.Flush,
        ["otherMs"] = delays.Other,
        ["inner"] = Inner.GetFeature<IHasStatus>()?.GetStatus(),
    };
}
