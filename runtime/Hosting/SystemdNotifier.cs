using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Serilog;

namespace HandlerRuntime.Hosting;

/// <summary>
/// The sd_notify protocol (systemd's Type=notify): datagrams of "KEY=value" lines to the
/// socket in $NOTIFY_SOCKET, an absolute path or an abstract name ("@..."). READY=1 once the
/// portals listen, RELOADING=1 and READY=1 around a reload, STOPPING=1 at shutdown, and
/// WATCHDOG=1 at half of $WATCHDOG_USEC from the thread pool, so a daemon whose pool is stuck
/// stops petting the watchdog and systemd restarts it. Without $NOTIFY_SOCKET it does nothing.
/// </summary>
public sealed class SystemdNotifier : IDisposable
{
    private readonly Socket? socket;
    private readonly UnixDomainSocketEndPoint? endPoint;
    private readonly ILogger log;
    private Timer? watchdog;

    public SystemdNotifier(ILogger log)
    {
        this.log = log;
        var path = Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        if (string.IsNullOrEmpty(path))
            return;
        if (path[0] != '/' && path[0] != '@')
        {
            log.Warning("NOTIFY_SOCKET={Path} is neither a path nor an abstract socket name; not notifying systemd", path);
            return;
        }
        // An abstract name is given with '@' and sent with a leading NUL.
        endPoint = new UnixDomainSocketEndPoint(path[0] == '@' ? "\0" + path[1..] : path);
        socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    }

    /// <summary>Whether systemd is listening (the service runs as Type=notify).</summary>
    public bool Enabled => socket is not null;

    /// <summary>The daemon serves: READY=1 with a status line, and the watchdog starts if systemd asked for one.</summary>
    public void Ready(string status)
    {
        Send($"READY=1\nSTATUS={status}\nMAINPID={Environment.ProcessId}");
        if (watchdog is null && Environment.GetEnvironmentVariable("WATCHDOG_USEC") is { } usecText
            && long.TryParse(usecText, NumberStyles.None, CultureInfo.InvariantCulture, out var usec) && usec > 0
            && WatchdogIsOurs())
        {
            var every = TimeSpan.FromMicroseconds(usec / 2);
            watchdog = new Timer(_ => Send("WATCHDOG=1"), null, TimeSpan.Zero, every);
            log.Information("systemd watchdog: pinging every {Seconds:F1} s", every.TotalSeconds);
        }
    }

    public void Reloading() => Send($"RELOADING=1\nMONOTONIC_USEC={Environment.TickCount64 * 1000}");

    public void Stopping()
    {
        watchdog?.Dispose();
        watchdog = null;
        Send("STOPPING=1");
    }

    /// <summary>$WATCHDOG_PID, when set, names the process the watchdog is for.</summary>
    private static bool WatchdogIsOurs()
        => Environment.GetEnvironmentVariable("WATCHDOG_PID") is not { Length: > 0 } pid || pid == Environment.ProcessId.ToString(CultureInfo.InvariantCulture);

    private void Send(string message)
    {
        if (socket is null || endPoint is null)
            return;
        try
        {
            socket.SendTo(Encoding.UTF8.GetBytes(message), endPoint);
        }
        catch (SocketException e)
        {
            log.Warning("Telling systemd {Message} failed: {Reason}", message.Split('\n')[0], e.Message);
        }
    }

    public void Dispose()
    {
        watchdog?.Dispose();
        socket?.Dispose();
    }
}
