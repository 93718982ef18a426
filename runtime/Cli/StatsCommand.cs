using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using HandlerRuntime.Control;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace HandlerRuntime.Cli;

/// <summary>`hrt stats [--watch] [--interval S] [LUN]`: an iostat of the LUNs, from two samples of `GET /v1/stats`.</summary>
internal static class StatsCommand
{
    /// <summary>Rates of one LUN between two samples.</summary>
    public sealed record LunRates(string Lun, double ReadsPerSecond, double WritesPerSecond, double ReadMBps, double WriteMBps,
        double AverageLatencyMicroseconds, double P99LatencyMicroseconds, long QueueDepth, double ErrorsPerSecond);

    public static Command Build(Func<string, string, Func<ControlClient, ParseResult, Task<int>>, Symbol[], Command> verb, Func<ParseResult, bool> json)
    {
        var lun = new Argument<string?>("lun") { Description = "Only this LUN", Arity = ArgumentArity.ZeroOrOne };
        var watch = new Option<bool>("--watch") { Description = "Refresh until interrupted" };
        var interval = new Option<double>("--interval") { Description = "Seconds between samples (default 1)", DefaultValueFactory = _ => 1.0 };
        return verb("stats", "IOPS, MB/s, average and p99 latency and queue depth per LUN (like iostat)", async (c, r) =>
        {
            var only = r.GetValue(lun);
            var every = TimeSpan.FromSeconds(Math.Clamp(r.GetValue(interval), 0.1, 3600));
            var before = await c.GetAsync<StatsDto>("v1/stats");
            if (only is not null && before.Luns.All(l => l.Name != only))
                throw new CliException(Luns.LunRegistry.NoSuchLun(only));
            if (!r.GetValue(watch))
            {
                await Task.Delay(every);
                var rates = Rates(before, await c.GetAsync<StatsDto>("v1/stats"), only);
                if (json(r))
                    Console.WriteLine(JsonSerializer.Serialize(rates, ControlClient.Json));
                else
                    AnsiConsole.Write(Table(rates));
                return 0;
            }
            await AnsiConsole.Live(Table([])).StartAsync(async live =>
            {
                using var interrupted = new CancellationTokenSource();
                Console.CancelKeyPress += (_, e) => { e.Cancel = true; interrupted.Cancel(); };
                while (!interrupted.IsCancellationRequested)
                {
                    try { await Task.Delay(every, interrupted.Token); } catch (OperationCanceledException) { break; }
                    var after = await c.GetAsync<StatsDto>("v1/stats");
                    live.UpdateTarget(Table(Rates(before, after, only)));
                    before = after;
                }
            });
            return 0;
        }, [lun, watch, interval]);
    }

    public static IReadOnlyList<LunRates> Rates(StatsDto before, StatsDto after, string? only)
    {
        var dt = Math.Max(1e-6, after.At - before.At);
        var list = new List<LunRates>();
        foreach (var a in after.Luns.Where(l => only is null || l.Name == only))
        {
            var b = before.Luns.FirstOrDefault(l => l.Name == a.Name);
            KindStatsDto Zero(KindStatsDto k) => new(0, 0, 0, new long[k.Buckets.Count]);
            var (br, bw, bo) = b is null ? (Zero(a.Read), Zero(a.Write), Zero(a.Other)) : (b.Read, b.Write, b.Other);
            var ops = (a.Read.Count - br.Count) + (a.Write.Count - bw.Count);
            var latency = (a.Read.LatencySeconds - br.LatencySeconds) + (a.Write.LatencySeconds - bw.LatencySeconds);
            var buckets = a.Read.Buckets.Select((n, i) => n - br.Buckets[i] + a.Write.Buckets[i] - bw.Buckets[i]).ToArray();
            var errors = a.CheckConditions.Values.Sum() + a.OtherStatuses - (b is null ? 0 : b.CheckConditions.Values.Sum() + b.OtherStatuses);
            list.Add(new LunRates(a.Name, (a.Read.Count - br.Count) / dt, (a.Write.Count - bw.Count) / dt,
                (a.Read.Bytes - br.Bytes) / dt / 1e6, (a.Write.Bytes - bw.Bytes) / dt / 1e6,
                ops == 0 ? 0 : latency / ops * 1e6, Percentile(buckets, after.LatencyBucketSeconds, 0.99) * 1e6, a.InFlight, errors / dt));
        }
        return list;
    }

    /// <summary>The upper bound of the bucket holding the <paramref name="q"/> quantile (the last bound when it is beyond them all); 0 with no data.</summary>
    public static double Percentile(long[] buckets, IReadOnlyList<double> bounds, double q)
    {
        var total = buckets.Sum();
        if (total == 0)
            return 0;
        long seen = 0;
        for (var i = 0; i < buckets.Length; i++)
        {
            seen += buckets[i];
            if (seen >= q * total)
                return i < bounds.Count ? bounds[i] : bounds[^1];
        }
        return bounds[^1];
    }

    private static IRenderable Table(IReadOnlyList<LunRates> rates)
    {
        var t = new Table().AddColumns("LUN", "r/s", "w/s", "rMB/s", "wMB/s", "avg µs", "p99 µs", "QD", "err/s");
        foreach (var col in t.Columns.Skip(1))
            col.RightAligned();
        string F(double v, string format = "F1") => v.ToString(format, CultureInfo.InvariantCulture);
        foreach (var r in rates)
            t.AddRow(Markup.Escape(r.Lun), F(r.ReadsPerSecond, "F0"), F(r.WritesPerSecond, "F0"), F(r.ReadMBps), F(r.WriteMBps),
                F(r.AverageLatencyMicroseconds), F(r.P99LatencyMicroseconds, "F0"), r.QueueDepth.ToString(CultureInfo.InvariantCulture), F(r.ErrorsPerSecond));
        return t;
    }
}
