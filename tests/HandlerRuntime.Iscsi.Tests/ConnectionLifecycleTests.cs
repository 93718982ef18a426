using System.Text.Json.Nodes;

namespace HandlerRuntime.Iscsi.Tests;

/// <summary>
/// Every way a connection ends releases it (issue 19): after thousands of connections that
/// end badly, in every way <see cref="HostileClient"/> knows, the daemon is alive, counts 0
/// connections and 0 sessions, logged no internal error, and a clean login works.
/// </summary>
public sealed class ConnectionLifecycleTests
{
    private const int PerKind = 150;
    private const int RacingRounds = 600; // the data-out race needs many tries to be met
    private const int Parallel = 16;

    [Fact]
    public async Task Thousands_of_badly_ending_connections_leave_no_connection_session_or_error_behind()
    {
        await using var daemon = await Daemons.StartRamAsync("64M", config =>
        {
            var iscsi = Daemons.Iscsi(config);
            iscsi["loginTimeoutSeconds"] = 2;
            iscsi["maxSessions"] = 32; // twice the clients at once: some logins meet the limit, most get through
        });

        var runs = new List<(HostileClient.Kind Kind, int Seed)>();
        foreach (var kind in Enum.GetValues<HostileClient.Kind>())
            for (var i = 0; i < (kind == HostileClient.Kind.DataOutFaultsRacingDelivery ? RacingRounds : PerKind); i++)
                runs.Add((kind, runs.Count));
        var shuffled = runs.OrderBy(r => HashCode.Combine(r.Seed, 19)).ToList();

        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        await System.Threading.Tasks.Parallel.ForEachAsync(shuffled, new ParallelOptions { MaxDegreeOfParallelism = Parallel, CancellationToken = limit.Token },
            async (run, _) => await HostileClient.RunAsync(daemon.Port, Daemons.Target, run.Kind, run.Seed));

        Assert.False(daemon.HasExited, "the daemon died under hostile connections:\n" + daemon.Output);

        // Connections end asynchronously (a session drains its commands first): wait for the count to settle.
        var (connections, sessions) = (-1, -1);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            var status = JsonNode.Parse(await daemon.CliOkAsync("status", "--json"))!;
            (connections, sessions) = (status["connections"]!.GetValue<int>(), status["sessions"]!.GetValue<int>());
            if (connections == 0 && sessions == 0)
                break;
            await Task.Delay(250);
        }
        Assert.True(connections == 0 && sessions == 0,
            $"after {runs.Count} hostile connections `hrt status` still counts {connections} connection(s) and {sessions} session(s)");

        var inq = await Daemons.RunAsync("iscsi-inq", [daemon.Url()]);
        Assert.True(inq.ExitCode == 0, $"a clean login was refused after the hostile connections: {inq}\n{Tail(daemon.Output)}");
        Assert.Contains("DIRECT_ACCESS", inq.StdOut);

        var log = await File.ReadAllTextAsync(daemon.LogFile);
        var internalErrors = log.Split('\n').Where(l => l.Contains("[ERR]") || l.Contains("[FTL]")).Take(5).ToList();
        Assert.True(internalErrors.Count == 0, "internal errors were logged:\n" + string.Join("\n", internalErrors) + "\n" + Tail(log));
    }

    private static string Tail(string text) => string.Join("\n", text.Split('\n').TakeLast(40));
}
