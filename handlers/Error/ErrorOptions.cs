using System.Globalization;
using HandlerRuntime.Handlers.Shared;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Error;

/// <summary>The operations error/ can fail.</summary>
[Flags]
internal enum FaultOps
{
    None = 0,
    Read = 1,
    Write = 2,
    Flush = 4,
    Unmap = 8,
    Zero = 16,
}

/// <summary>
/// <c>error/[errno=E][,rate=R][,ops=a+b][,range=S-E][,file=P][,delay-ms=N][,short=1][,seed=N]@&lt;cfgstring&gt;</c>.
/// </summary>
internal sealed record ErrorOptions(string Inner)
{
    /// <summary>The errno to fail with; null with <see cref="Bug"/>.</summary>
    public int Errno { get; init; } = Errnos.EIO;

    /// <summary>Fail with a plain exception, as a handler's bug would (answered HARDWARE ERROR).</summary>
    public bool Bug { get; init; }

    public double Rate { get; init; } = 1;
    public FaultOps Ops { get; init; } = FaultOps.Read | FaultOps.Write;
    public long RangeStart { get; init; }
    public long RangeEnd { get; init; } = long.MaxValue;
    public string? TriggerFile { get; init; }
    public int DelayMs { get; init; }
    public bool ShortReads { get; init; }
    public ulong Seed { get; init; } = 1;

    public string ErrnoName => Bug ? "bug" : Errnos.Describe(Errno);

    private static readonly string[] Keys = ["errno", "rate", "ops", "range", "file", "delay-ms", "short", "seed"];

    public const string Help =
        "error/[errno=EIO][,rate=1][,ops=read+write][,range=<start>-<end>][,file=<path>][,delay-ms=<n>][,short=1][,seed=<n>]@<cfgstring>  " +
        "Fails operations on the device it wraps, for fault tests of every layer above: with errno (EIO, ENOSPC, EROFS, ENOTCONN, " +
        "ETIMEDOUT, ENOMEM, ..., or bug for an exception that is no store's errno), at rate (0 to 1, or N%), on ops (read, write, " +
        "flush, unmap, zero joined by +), only where an operation overlaps range (bytes, end excluded, K/M/G suffixes), only while " +
        "file exists, after delay-ms; short=1 fails reads after reading their first half. seed makes the random choice repeatable. " +
        "Example: error/errno=EIO,rate=5%,ops=read@file//var/lib/hrt/disk0.img";

    /// <summary>Parses the config, or says in one sentence what is wrong with it.</summary>
    public static ErrorOptions? Parse(string config, out string error)
    {
        if (!FilterConfig.TryParse("error", config, Keys, out var parsed, out error))
            return null;
        var o = new ErrorOptions(parsed.Inner);
        foreach (var (key, value) in parsed.Options)
        {
            switch (key)
            {
                case "errno":
                    if (value.Equals("bug", StringComparison.OrdinalIgnoreCase))
                        o = o with { Bug = true };
                    else if (Errnos.TryParse(value, out var errno))
                        o = o with { Errno = errno };
                    else
                        return Fail(out error, $"error: errno '{value}' is not one it knows; write one of {string.Join(", ", Errnos.Known)}, or bug (a failure that is no store's errno, answered HARDWARE ERROR).");
                    break;
                case "rate":
                    if (!FilterOptions.TryRate(value, out var rate))
                        return Fail(out error, $"error: rate '{value}' is not a share of operations; write a number from 0 to 1 (0.05) or a percentage (5%).");
                    o = o with { Rate = rate };
                    break;
                case "ops":
                    var ops = FaultOps.None;
                    foreach (var name in value.Split('+', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    {
                        if (!Enum.TryParse<FaultOps>(name, ignoreCase: true, out var op) || op == FaultOps.None || !char.IsLetter(name[0]))
                            return Fail(out error, $"error: ops '{value}' names '{name}', which is no operation; join some of read, write, flush, unmap, zero with '+', e.g. ops=read+flush.");
                        ops |= op;
                    }
                    if (ops == FaultOps.None)
                        return Fail(out error, "error: ops is empty; join some of read, write, flush, unmap, zero with '+'.");
                    o = o with { Ops = ops };
                    break;
                case "range":
                    var dash = value.IndexOf('-');
                    if (dash < 0 || !FilterOptions.TryBytes(value[..dash], out var start) || !FilterOptions.TryBytes(value[(dash + 1)..], out var end) || end <= start)
                        return Fail(out error, $"error: range '{value}' is not <start>-<end> in bytes with start below end (end excluded; K, M, G suffixes), e.g. range=1M-2M.");
                    o = o with { RangeStart = start, RangeEnd = end };
                    break;
                case "file":
                    if (!Path.IsPathFullyQualified(value) || value.EndsWith('/'))
                        return Fail(out error, $"error: file '{value}' is not an absolute path of a file; faults are injected while that file exists, e.g. file=/run/hrt/fail-disk0.");
                    o = o with { TriggerFile = value };
                    break;
                case "delay-ms":
                    if (!FilterOptions.TryMilliseconds(value, out var delay))
                        return Fail(out error, $"error: delay-ms '{value}' is not a whole number of milliseconds from 0 to 3600000.");
                    o = o with { DelayMs = delay };
                    break;
                case "short":
                    if (value is not ("0" or "1"))
                        return Fail(out error, $"error: short '{value}' must be 1 (a failed read returns its first half first) or 0.");
                    o = o with { ShortReads = value == "1" };
                    break;
                case "seed":
                    if (!ulong.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seed))
                        return Fail(out error, $"error: seed '{value}' is not a whole number.");
                    o = o with { Seed = seed };
                    break;
            }
        }
        if (o.ShortReads && (o.Ops & FaultOps.Read) == 0)
            return Fail(out error, "error: short=1 shortens failed reads, but ops does not include read; add it (ops=read+...) or drop short.");
        return o;
    }

    private static ErrorOptions? Fail(out string error, string sentence)
    {
        error = sentence;
        return null;
    }
}
