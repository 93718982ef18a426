using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Metrics;

/// <summary>
/// The Prometheus text exposition (format 0.0.4) of the daemon's statistics: per LUN commands,
/// bytes, latency histograms, outcomes and queue depth; per fabric connections and sessions;
/// handlers' numeric status fields as gauges (qcow cache hit rate, zbc open zones, replication
/// lag ...); the garbage collector. Written from <see cref="LunStats"/>, the one set of counters
/// `hrt stats` also reads (prometheus-net's collectors would count each command a second time).
/// </summary>
public static class MetricsText
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    public static string Render(Daemon daemon)
    {
        var w = new Writer();
        var luns = daemon.Luns.Entries;
        w.Family("hrt_lun_commands_total", "counter", "SCSI commands a LUN finished, by kind (read, write, other).");
        foreach (var e in luns)
            foreach (var kind in Enum.GetValues<CommandKind>())
                w.Sample("hrt_lun_commands_total", e.Lun.Stats.Of(kind).Count, ("lun", e.Name), ("kind", Name(kind)));
        w.Family("hrt_lun_bytes_total", "counter", "Bytes a LUN's finished commands moved, by kind.");
        foreach (var e in luns)
            foreach (var kind in new[] { CommandKind.Read, CommandKind.Write })
                w.Sample("hrt_lun_bytes_total", e.Lun.Stats.Of(kind).Bytes, ("lun", e.Name), ("kind", Name(kind)));
        w.Family("hrt_lun_command_duration_seconds", "histogram", "Time from a command's arrival at the LUN to its end, by kind.");
        foreach (var e in luns)
            foreach (var kind in Enum.GetValues<CommandKind>())
            {
                var k = e.Lun.Stats.Of(kind);
                var buckets = k.Buckets();
                long cumulative = 0;
                for (var i = 0; i < buckets.Length; i++)
                {
                    cumulative += buckets[i];
                    var le = i < LunStats.LatencyBucketSeconds.Length ? LunStats.LatencyBucketSeconds[i].ToString("R", CultureInfo.InvariantCulture) : "+Inf";
                    w.Sample("hrt_lun_command_duration_seconds_bucket", cumulative, ("lun", e.Name), ("kind", Name(kind)), ("le", le));
                }
                w.Sample("hrt_lun_command_duration_seconds_sum", k.LatencySeconds, ("lun", e.Name), ("kind", Name(kind)));
                w.Sample("hrt_lun_command_duration_seconds_count", cumulative, ("lun", e.Name), ("kind", Name(kind)));
            }
        w.Family("hrt_lun_check_conditions_total", "counter", "CHECK CONDITION answers of a LUN, by sense key.");
        foreach (var e in luns)
            foreach (var key in Enum.GetValues<SenseKey>())
                if (e.Lun.Stats.SenseKeyCount(key) is var n and > 0)
                    w.Sample("hrt_lun_check_conditions_total", n, ("lun", e.Name), ("sense_key", key.ToString()));
        w.Family("hrt_lun_other_statuses_total", "counter", "Answers of a LUN that were neither GOOD nor CHECK CONDITION, by status.");
        foreach (var e in luns)
        {
            var s = e.Lun.Stats;
            foreach (var (status, n) in new[] { ("busy", s.Busy), ("task_set_full", s.TaskSetFull), ("reservation_conflict", s.ReservationConflicts), ("task_aborted", s.Aborted) })
                w.Sample("hrt_lun_other_statuses_total", n, ("lun", e.Name), ("status", status));
        }
        w.Family("hrt_lun_inflight_commands", "gauge", "Commands a LUN has taken and not finished (its queue depth).");
        foreach (var e in luns)
            w.Sample("hrt_lun_inflight_commands", e.Lun.Stats.InFlight, ("lun", e.Name));
        w.Family("hrt_lun_size_bytes", "gauge", "A LUN's size.");
        foreach (var e in luns)
            w.Sample("hrt_lun_size_bytes", e.SizeBytes, ("lun", e.Name));
        w.Family("hrt_device_status", "gauge", "Numeric fields of a LUN's handler status (hrt status), by field path.");
        foreach (var e in luns)
            if (e.Lun.Device.Status is { } status)
                foreach (var (field, value) in Numbers(status.GetStatus(), ""))
                    w.Sample("hrt_device_status", value, ("lun", e.Name), ("handler", e.Handler.Subtype), ("field", field));

        w.Family("hrt_fabric_connections", "gauge", "Transport connections a fabric has open.");
        foreach (var f in daemon.Fabrics)
            w.Sample("hrt_fabric_connections", f.ConnectionCount, ("fabric", f.Name));
        w.Family("hrt_fabric_sessions", "gauge", "Sessions a fabric has.");
        foreach (var f in daemon.Fabrics)
            w.Sample("hrt_fabric_sessions", f.Sessions.Count, ("fabric", f.Name));

        w.Family("hrt_gc_allocated_bytes_total", "counter", "Bytes the daemon has allocated since it started.");
        w.Sample("hrt_gc_allocated_bytes_total", GC.GetTotalAllocatedBytes(precise: false));
        w.Family("hrt_gc_collections_total", "counter", "Garbage collections, by generation.");
        for (var g = 0; g <= 2; g++)
            w.Sample("hrt_gc_collections_total", GC.CollectionCount(g), ("generation", g.ToString(CultureInfo.InvariantCulture)));
        return w.ToString();
    }

    private static string Name(CommandKind kind) => kind.ToString().ToLowerInvariant();

    /// <summary>Every number (and true/false as 1/0) in a status object, with its dotted path.</summary>
    private static IEnumerable<(string Field, double Value)> Numbers(JsonNode? node, string path)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (k, v) in o)
                    foreach (var x in Numbers(v, path.Length == 0 ? k : $"{path}.{k}"))
                        yield return x;
                break;
            case JsonArray a:
                for (var i = 0; i < a.Count; i++)
                    foreach (var x in Numbers(a[i], $"{path}[{i}]"))
                        yield return x;
                break;
            case JsonValue v when v.TryGetValue<double>(out var d):
                yield return (path, d);
                break;
            case JsonValue v when v.TryGetValue<bool>(out var b):
                yield return (path, b ? 1 : 0);
                break;
        }
    }

    private sealed class Writer
    {
        private readonly StringBuilder text = new();

        public void Family(string name, string type, string help)
            => text.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

        public void Sample(string name, double value, params (string Key, string Value)[] labels)
        {
            text.Append(name);
            if (labels.Length > 0)
            {
                text.Append('{');
                for (var i = 0; i < labels.Length; i++)
                {
                    if (i > 0)
                        text.Append(',');
                    text.Append(labels[i].Key).Append("=\"");
                    foreach (var c in labels[i].Value)
                        text.Append(c switch { '\\' => "\\\\", '"' => "\\\"", '\n' => "\\n", _ => c.ToString() });
                    text.Append('"');
                }
                text.Append('}');
            }
            text.Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }

        public override string ToString() => text.ToString();
    }
}
