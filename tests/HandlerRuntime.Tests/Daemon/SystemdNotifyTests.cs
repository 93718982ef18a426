using System.Net.Sockets;
using System.Text;

namespace HandlerRuntime.Tests.Daemon;

/// <summary>
/// systemd's Type=notify protocol, spoken by a real `hrt serve` to a datagram socket of the
/// test's own in $NOTIFY_SOCKET, as systemd would hold it: READY=1 only once the portal
/// accepts connections, WATCHDOG=1 at half of $WATCHDOG_USEC, RELOADING=1 then READY=1 around
/// a SIGHUP reload, STOPPING=1 on SIGTERM.
/// </summary>
public sealed class SystemdNotifyTests
{
    [Fact]
    public async Task The_daemon_tells_systemd_when_it_is_ready_alive_reloading_and_stopping()
    {
        using var dir = new TempDir("hrt-notify");
        var path = dir.File("notify.sock");
        using var systemd = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        systemd.Bind(new UnixDomainSocketEndPoint(path));
        var received = new List<string>();
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var listen = Task.Run(async () =>
        {
            var buffer = new byte[4096];
            try
            {
                while (true)
                {
                    var n = await systemd.ReceiveAsync(buffer, SocketFlags.None, stop.Token);
                    lock (received)
                        received.Add(Encoding.UTF8.GetString(buffer, 0, n));
                }
            }
            catch (OperationCanceledException)
            {
            }
        });
        string[] Messages() { lock (received) return received.ToArray(); }

        await using var daemon = await HrtDaemon.StartAsync(environment: new Dictionary<string, string> { ["NOTIFY_SOCKET"] = path, ["WATCHDOG_USEC"] = "400000" });
        await WaitAsync(() => Messages().Any(m => m.StartsWith("READY=1", StringComparison.Ordinal)), "READY=1");
        var ready = Messages().First(m => m.StartsWith("READY=1", StringComparison.Ordinal));
        Assert.Contains($"MAINPID={daemon.ProcessId}", ready);
        Assert.Contains("STATUS=serving", ready);
        using (var client = new TcpClient())
            await client.ConnectAsync("127.0.0.1", daemon.Port); // the portal listened before READY was sent

        await WaitAsync(() => Messages().Count(m => m == "WATCHDOG=1") >= 3, "three WATCHDOG=1 pings (every 0.2 s)");

        System.Diagnostics.Process.Start("kill", ["-HUP", daemon.ProcessId.ToString()])!.WaitForExit();
        await WaitAsync(() => Messages().Any(m => m.StartsWith("RELOADING=1", StringComparison.Ordinal)), "RELOADING=1");
        await WaitAsync(() => Messages().SkipWhile(m => !m.StartsWith("RELOADING=1", StringComparison.Ordinal)).Any(m => m.StartsWith("READY=1", StringComparison.Ordinal)), "READY=1 after the reload");
        Assert.Contains("MONOTONIC_USEC=", Messages().First(m => m.StartsWith("RELOADING=1", StringComparison.Ordinal)));

        await daemon.StopAsync();
        await WaitAsync(() => Messages().Contains("STOPPING=1"), "STOPPING=1");
        stop.Cancel();
        await listen;
    }

    private static async Task WaitAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"systemd was never told {what}");
            await Task.Delay(50);
        }
    }
}
