using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using HandlerRuntime.Config;
using HandlerRuntime.Fabrics.Iscsi.Connections;
using HandlerRuntime.Fabrics.Iscsi.Login;
using HandlerRuntime.Fabrics.Iscsi.Sessions;
using HandlerRuntime.Scsi;
using Serilog;

namespace HandlerRuntime.Fabrics.Iscsi;

/// <summary>
/// The iSCSI target fabric (RFC 7143): listens on the configured portals, logs
/// initiators in, and carries their commands to the targets of the
/// <see cref="TargetRegistry"/>. All portals form one target portal group.
/// </summary>
public sealed class IscsiFabric(TargetRegistry targets, ILogger log) : IFabric
{
    private readonly ConnectionSet<IscsiConnection> connections = new("iSCSI", log);
    /// <summary>The one target portal group tag: every portal leads to the same target port.</summary>
    public const ushort PortalGroupTag = 1;

    private const int SolSocket = 1;   // Linux SOL_SOCKET
    private const int SoReuseAddr = 2; // Linux SO_REUSEADDR
    private readonly object gate = new();
    private readonly Dictionary<string, Listener> listeners = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, TargetPort> ports = new(StringComparer.OrdinalIgnoreCase);
    private readonly CancellationTokenSource stopping = new();
    private readonly ILogger log = log.ForContext("Fabric", "iscsi");
    private volatile IscsiOptions options = IscsiOptions.Default;

    public string Name => "iscsi";

    internal TargetRegistry Targets { get; } = targets;

    internal SessionTable Sessions { get; } = new();

    internal IscsiOptions Options => options;

    public IReadOnlyList<string> Endpoints
    {
        get
        {
            lock (gate)
                return listeners.Values.Select(l => $"iscsi {Format(l.EndPoint)}").ToList();
        }
    }

    IReadOnlyList<SessionInfo> IFabric.Sessions => Sessions.All.Where(s => !s.IsClosed).Select(s => s.Describe()).ToList();

    public int ConnectionCount => connections.Count;

    public Task StartAsync(RuntimeSettings settings, CancellationToken cancellationToken)
    {
        var (parsed, errors) = IscsiOptions.From(settings.Iscsi);
        if (parsed is null)
            throw new StartupException("The iscsi settings are invalid:\n  " + string.Join("\n  ", errors));
        options = parsed;
        foreach (var portal in settings.Portals)
            Listen(portal);
        return Task.CompletedTask;
    }

    public Task ApplyAsync(RuntimeSettings settings)
    {
        var (parsed, errors) = IscsiOptions.From(settings.Iscsi);
        if (parsed is null)
            log.Error("iSCSI settings unchanged, the new ones are invalid: {Errors}", string.Join(" ", errors));
        else if (parsed != options)
        {
            options = parsed;
            log.Information("iSCSI settings changed; new sessions negotiate with them");
        }
        var wanted = settings.Portals.ToHashSet(StringComparer.OrdinalIgnoreCase);
        lock (gate)
        {
            foreach (var gone in listeners.Keys.Where(k => !wanted.Contains(k)).ToList())
            {
                listeners[gone].Dispose();
                listeners.Remove(gone);
                log.Information("iSCSI portal {Portal} closed", gone);
            }
        }
        foreach (var portal in wanted)
        {
            bool known;
            lock (gate)
                known = listeners.ContainsKey(portal);
            if (known)
                continue;
            try
            {
                Listen(portal);
            }
            catch (StartupException e)
            {
                log.Error("{Reason}", e.Message);
            }
        }
        return Task.CompletedTask;
    }

    private void Listen(string portal)
    {
        if (!RuntimeSettings.TryParsePortal(portal, out var host, out var port))
            throw new StartupException($"The iSCSI portal '{portal}' is not an address:port; write it like 127.0.0.1:3260 or [::1]:3260.");
        var address = host == "localhost" ? IPAddress.Loopback : IPAddress.Parse(host);
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // SO_REUSEADDR alone, so a restarted daemon rebinds a port still in TIME_WAIT. .NET's
            // ReuseAddress also sets SO_REUSEPORT on Linux, which let a second daemon bind the
            // same portal and take half of its connections (seen on a shared machine).
            socket.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
            socket.Bind(new IPEndPoint(address, port));
            socket.Listen(256);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new StartupException($"The iSCSI portal {portal} cannot be opened ({e.Message}); stop whatever listens there (tgtd, LIO) or choose another with --portal.");
        }
        var listener = new Listener(socket, (IPEndPoint)socket.LocalEndPoint!);
        lock (gate)
            listeners[portal] = listener;
        _ = AcceptLoopAsync(listener); // ends when the listener is disposed
        log.Information("iSCSI portal {Portal} listening", Format(listener.EndPoint));
    }

    private async Task AcceptLoopAsync(Listener listener)
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.Socket.AcceptAsync(stopping.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (listener.Disposed || stopping.IsCancellationRequested)
                    return;
                log.Warning("iSCSI portal {Portal}: accept failed: {Reason}", Format(listener.EndPoint), e.Message);
                await Task.Delay(100);
                continue;
            }
            var o = options;
            if (connections.Count >= o.MaxSessions * Math.Max(1, o.MaxConnections) + 16)
            {
                log.Warning("iSCSI: refusing a connection from {Remote}: too many connections", socket.RemoteEndPoint);
                socket.Dispose();
                continue;
            }
            socket.NoDelay = true;
            var connection = new IscsiConnection(this, socket, o, log);
            connections.Start(connection, connection.RunAsync, connection.RemoteEndPoint);
        }
    }

    internal IscsiSession CreateSession(SessionParameters parameters, string initiatorName, ulong isid, ScsiTarget? target, uint cmdSN)
    {
        ItNexus? nexus = null;
        if (target is not null)
        {
            var port = ports.GetOrAdd(target.Name, static name => new TargetPort($"{name},t,0x{PortalGroupTag:x4}", name, 1, PortalGroupTag, 5));
            nexus = Targets.Nexuses.Get($"{initiatorName},i,0x{isid:x12}", initiatorName, port);
        }
        IscsiSession? created = null;
        Sessions.Allocate(tsih => created = new IscsiSession(this, options, parameters, initiatorName, isid, tsih, target, nexus, cmdSN, log));
        return created!;
    }

    /// <summary>
    /// Waits until the tasks aborted on <paramref name="lun"/> have left it (before a task
    /// management response: CLEAR TASK SET and the resets end other initiators' tasks too).
    /// Those of every session of this fabric are awaited by their end signal, then the LUN's own
    /// for the rest (an aborted task no session here owns: another LU's EXTENDED COPY step, a
    /// session already replaced by reinstatement).
    /// </summary>
    internal async Task WaitAbortedAsync(ScsiLun lun, IscsiSession asking)
    {
        var timeout = IscsiSession.AbortTimeout;
        var ends = Sessions.All.Select(s => s.WhenEndedAsync(c => c.State == CommandState.Executing && c.Task.Aborted && c.Task.RunningOn == lun, timeout));
        var ended = (await Task.WhenAll(ends)).All(static e => e);
        if (ended)
        {
            var rest = lun.WhenNoTaskAsync(static t => t.Aborted);
            ended = await Task.WhenAny(rest, Task.Delay(timeout)) == rest;
        }
        if (!ended)
            log.Warning("iSCSI session {Initiator}: tasks aborted on LUN {Lun} did not finish within {Seconds} s", asking.InitiatorName, lun.Name, timeout.TotalSeconds);
    }

    internal void CloseSessionsOf(ScsiTarget target, string why)
    {
        foreach (var s in Sessions.All)
            if (s.Target == target)
                s.CloseAll(why);
    }

    /// <summary>Addresses for SendTargets: each portal, with a wildcard portal shown as the address the initiator reached.</summary>
    internal IEnumerable<string> PortalAddresses(IPEndPoint? local)
    {
        List<IPEndPoint> endpoints;
        lock (gate)
            endpoints = listeners.Values.Select(l => l.EndPoint).ToList();
        foreach (var ep in endpoints)
        {
            var shown = ep;
            if ((ep.Address.Equals(IPAddress.Any) || ep.Address.Equals(IPAddress.IPv6Any)) && local is not null)
                shown = new IPEndPoint(local.Address.IsIPv4MappedToIPv6 ? local.Address.MapToIPv4() : local.Address, ep.Port);
            yield return Format(shown);
        }
    }

    private static string Format(IPEndPoint ep)
        => ep.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{ep.Address}]:{ep.Port}" : $"{ep.Address}:{ep.Port}";

    public async ValueTask DisposeAsync()
    {
        stopping.Cancel();
        List<Listener> all;
        lock (gate)
        {
            all = listeners.Values.ToList();
            listeners.Clear();
        }
        foreach (var l in all)
            l.Dispose();
        foreach (var s in Sessions.All)
            s.CloseAll("shutting down");
        foreach (var c in connections.All)
            c.Close("shutting down");
        await connections.WhenAllEndedAsync(TimeSpan.FromSeconds(30));
        stopping.Dispose();
    }

    private sealed class Listener(Socket socket, IPEndPoint endPoint) : IDisposable
    {
        public Socket Socket { get; } = socket;
        public IPEndPoint EndPoint { get; } = endPoint;
        public bool Disposed { get; private set; }

        public void Dispose()
        {
            Disposed = true;
            Socket.Dispose();
        }
    }
}
