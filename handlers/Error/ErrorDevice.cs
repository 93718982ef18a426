using System.Text.Json.Nodes;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Error;

/// <summary>
/// Fails chosen operations of the device it wraps and passes the rest on untouched. Which
/// operations fail is decided per call from the options, and, for a rate below 1, by a
/// deterministic hash of the seed and a call counter: lock-free, thread-safe, and the same
/// sequence on every run with the same seed.
/// </summary>
internal sealed class ErrorDevice(IBlockDevice inner, ErrorOptions options) : DelegatingBlockDevice(inner), IHasStatus
{
    private long decisions;
    private long injected;

    public long Injected => Volatile.Read(ref injected);

    public override ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
        => ShouldFail(FaultOps.Read, offset, destination.Length)
            ? FailReadAsync(offset, destination, cancellationToken)
            : Inner.ReadAsync(offset, destination, cancellationToken);

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
        => ShouldFail(FaultOps.Write, offset, source.Length)
            ? FailAsync(FaultOps.Write, offset, source.Length, cancellationToken)
            : Inner.WriteAsync(offset, source, flags, cancellationToken);

    public override ValueTask FlushAsync(CancellationToken cancellationToken)
        => ShouldFail(FaultOps.Flush, 0, 0) ? FailAsync(FaultOps.Flush, 0, 0, cancellationToken) : Inner.FlushAsync(cancellationToken);

    public override ValueTask UnmapAsync(long offset, long length, CancellationToken cancellationToken)
        => ShouldFail(FaultOps.Unmap, offset, length)
            ? FailAsync(FaultOps.Unmap, offset, length, cancellationToken)
            : Inner.UnmapAsync(offset, length, cancellationToken);

    public override ValueTask WriteZeroesAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken)
        => ShouldFail(FaultOps.Zero, offset, length)
            ? FailAsync(FaultOps.Zero, offset, length, cancellationToken)
            : Inner.WriteZeroesAsync(offset, length, flags, cancellationToken);

    /// <summary>Whether this call fails: the operation is chosen, overlaps the range (flush has none), the trigger file exists, and the dice say so.</summary>
    private bool ShouldFail(FaultOps op, long offset, long length)
    {
        if ((options.Ops & op) == 0)
            return false;
        if (op != FaultOps.Flush && (offset + length <= options.RangeStart || offset >= options.RangeEnd))
            return false;
        if (options.TriggerFile is { } file && !File.Exists(file))
            return false;
        if (options.Rate < 1)
        {
            var n = (ulong)Interlocked.Increment(ref decisions);
            // SplitMix64 of (seed, n): uniform in [0, 1) with 53 bits.
            var z = options.Seed + n * 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            if ((z >> 11) * (1.0 / (1UL << 53)) >= options.Rate)
                return false;
        }
        Interlocked.Increment(ref injected);
        return true;
    }

    private async ValueTask FailAsync(FaultOps op, long offset, long length, CancellationToken ct)
    {
        if (options.DelayMs > 0)
            await Task.Delay(options.DelayMs, ct);
        throw Failure(op, offset, length);
    }

    /// <summary>A failed read; with short=1 its first half (whole blocks) is read from the device first, as a read that broke off would leave it.</summary>
    private async ValueTask FailReadAsync(long offset, Memory<byte> destination, CancellationToken ct)
    {
        if (options.DelayMs > 0)
            await Task.Delay(options.DelayMs, ct);
        if (options.ShortReads)
        {
            var block = Geometry.LogicalBlockSize;
            var half = destination.Length / 2 / block * block;
            if (half > 0)
                await Inner.ReadAsync(offset, destination[..half], ct);
        }
        throw Failure(FaultOps.Read, offset, destination.Length);
    }

    private Exception Failure(FaultOps op, long offset, long length)
    {
        var what = $"error/ injected a {op.ToString().ToLowerInvariant()} failure at {offset}+{length}";
        return options.Bug ? new InvalidOperationException(what + " (errno=bug: not a store's errno)") : new DeviceIOException(options.Errno, what);
    }

    public JsonObject GetStatus() => new()
    {
        ["filter"] = "error",
        ["errno"] = options.ErrnoName,
        ["rate"] = options.Rate,
        ["ops"] = options.Ops.ToString().ToLowerInvariant().Replace(", ", "+"),
        ["armed"] = options.TriggerFile is not { } file || File.Exists(file),
        ["injected"] = Injected,
        ["inner"] = Inner.GetFeature<IHasStatus>()?.GetStatus(),
    };
}
