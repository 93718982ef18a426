using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace HandlerRuntime.Iscsi.Tests;

/// <summary>
/// The statistics through a real daemon: exact command, byte, error and histogram counts for a
/// known sequence of iSCSI commands, scraped from the Prometheus endpoint, and `hrt stats`
/// showing the rates of a bounded load.
/// </summary>
public sealed class MetricsTests
{
    private static double Value(string scrape, string series)
    {
        var m = Regex.Match(scrape, "^" + Regex.Escape(series) + @" (\S+)$", RegexOptions.Multiline);
        Assert.True(m.Success, $"{series} is not in the scrape:\n{scrape}");
        return double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task The_endpoint_counts_exactly_the_commands_bytes_errors_and_latencies_an_initiator_caused()
    {
        var metricsPort = FreePort.Next();
        await using var daemon = await Daemons.StartRamAsync("16M", c => c["metrics"] = new JsonObject { ["listen"] = $"127.0.0.1:{metricsPort}" });
        await using var raw = await RawInitiator.ConnectAsync(daemon.Port);
        Assert.Equal(0, await raw.LoginAsync("iqn.2026-12.test:metrics", Daemons.Target));
        for (var i = 0; i < 5 && (await raw.CommandAsync(Cdbs.TestUnitReady())).Status != 0; i++)
        {
        }
        using var http = new HttpClient();
        var before = await http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics");
        var reads0 = Value(before, "hrt_lun_commands_total{lun=\"r0\",kind=\"read\"}");
        var writes0 = Value(before, "hrt_lun_commands_total{lun=\"r0\",kind=\"write\"}");

        var data = new byte[4096];
        Random.Shared.NextBytes(data);
        for (var i = 0; i < 7; i++)
            Assert.Equal(0, (await raw.CommandAsync(Cdbs.Write10((uint)i * 8, 8), data)).Status);
        for (var i = 0; i < 3; i++)
            Assert.Equal(0, (await raw.CommandAsync(Cdbs.Read10((uint)i * 8, 8), expectedIn: 4096)).Status);
        var outside = await raw.CommandAsync(Cdbs.Read10(1u << 30, 1), expectedIn: 512); // beyond the LUN: ILLEGAL REQUEST
        Assert.Equal(2, outside.Status);

        var after = await http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics");
        Assert.Equal(writes0 + 7, Value(after, "hrt_lun_commands_total{lun=\"r0\",kind=\"write\"}"));
        Assert.Equal(reads0 + 3, Value(after, "hrt_lun_commands_total{lun=\"r0\",kind=\"read\"}"));
        Assert.Equal(7 * 4096, Value(after, "hrt_lun_bytes_total{lun=\"r0\",kind=\"write\"}") - Value(before, "hrt_lun_bytes_total{lun=\"r0\",kind=\"write\"}"));
        Assert.Equal(3 * 4096, Value(after, "hrt_lun_bytes_total{lun=\"r0\",kind=\"read\"}") - Value(before, "hrt_lun_bytes_total{lun=\"r0\",kind=\"read\"}"));
        Assert.True(Value(after, "hrt_lun_check_conditions_total{lun=\"r0\",sense_key=\"IllegalRequest\"}") >= 1);
        Assert.Equal(Value(after, "hrt_lun_command_duration_seconds_count{lun=\"r0\",kind=\"write\"}"),
            Value(after, "hrt_lun_command_duration_seconds_bucket{lun=\"r0\",kind=\"write\",le=\"+Inf\"}"));
        Assert.Equal(writes0 + 7, Value(after, "hrt_lun_command_duration_seconds_count{lun=\"r0\",kind=\"write\"}"));
        Assert.True(Value(after, "hrt_lun_command_duration_seconds_sum{lun=\"r0\",kind=\"write\"}") > 0);
        Assert.Equal(1, Value(after, "hrt_fabric_sessions{fabric=\"iscsi\"}"));
        Assert.Equal(1, Value(after, "hrt_fabric_connections{fabric=\"iscsi\"}"));
        Assert.Contains("# TYPE hrt_lun_command_duration_seconds histogram", after);
    }

    [Fact]
    public async Task Hrt_stats_shows_the_rates_of_a_bounded_load()
    {
        await using var daemon = await Daemons.StartRamAsync("64M");
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var load = Daemons.RunAsync("iscsi-perf", ["-t", "6", daemon.Url()], timeout: TimeSpan.FromSeconds(30));
        await Task.Delay(TimeSpan.FromSeconds(2));
        var json = JsonNode.Parse(await daemon.CliOkAsync("stats", "--json", "--interval", "2"))!.AsArray();
        var r0 = json.Single()!;
        Assert.Equal("r0", r0["lun"]!.GetValue<string>());
        Assert.True(r0["readsPerSecond"]!.GetValue<double>() > 100, json.ToJsonString()); // iscsi-perf reads as fast as it can
        Assert.True(r0["readMBps"]!.GetValue<double>() > 0);
        Assert.True(r0["p99LatencyMicroseconds"]!.GetValue<double>() > 0);
        var table = await daemon.CliOkAsync("stats", "r0");
        Assert.Contains("r/s", table);
        Assert.Contains("r0", table);
        await load;
        var missing = await daemon.CliAsync("stats", "nosuchlun");
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("There is no LUN named nosuchlun", missing.StdErr);
    }
}
