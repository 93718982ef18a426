using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using HandlerRuntime.Config;
using HandlerRuntime.Scsi;
using Serilog;

namespace HandlerRuntime.Fabrics.Nbd;

/// <summary>
/// The NBD server fabric (fixed newstyle, structured replies, STARTTLS): listens on the
/// configured addresses and serves the LUNs of the <see cref="TargetRegistry"/> as exports
/// named after them, for qemu, nbd-client and the kernel, libnbd's tools and fio. Every
/// request goes through the SCSI core (<see cref="NbdRequest"/>), each connection as its own
/// I_T nexus through an NBD target port of the LUN's target.
/// </summary>
public sealed class NbdFabric(TargetRegistry targets, ILogger log) : IFabric
{
    /// <summary>The relative port identifier of a target's NBD port (iSCSI's portal group is port 1).</summary>
    public const ushort RelativePortId = 2;
    /// <summary>SPC-4 protocol identifier Fh: no specific protocol (NBD has none of its own).</summary>
    public const byte ProtocolId = 0x0F;

    private const int SolSocket = 1;   // Linux SOL_SOCKET
    private const int SoReuseAddr = 2; // Linux SO_REUSEADDR
    private readonly object gate = new();
    private readonly Dictionary<string, Listener> listeners = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConnectionSet<NbdConnection> connections = new("NBD", log);
    private readonly ConcurrentDictionary<string, TargetPort> ports = new(StringComparer.OrdinalIgnoreCase);
    private readonly SortedSet<int> freeSlots = [];
    private readonly CancellationTokenSource stopping = new();
    private readonly ILogger log = log.ForContext("Fabric", "nbd");
    private int nextSlot;
    private volatile NbdOptions options = NbdOptions.Default;
    private volatile NbdTls? tls;

    public string Name => "nbd";

    internal TargetRegistry Targets { get; } = targets;

    internal bool Stopping => stopping.IsCancellationRequested;

    public IReadOnlyList<string> Endpoints
    {
        get
        {
            lock (gate)
                return listeners.Values.Select(l => $"nbd {Format(l.EndPoint)}").ToList();
        }
    }

    IReadOnlyList<SessionInfo> IFabric.Sessions => connections.All.Where(c => !c.IsClosed).Select(c => c.Describe()).ToList();

    public int ConnectionCount => connections.Count;

    public Task StartAsync(RuntimeSettings settings, CancellationToken cancellationToken)
    {
        var (parsed, errors) = NbdOptions.From(settings.Nbd);
        if (parsed is null)
            throw new StartupException("The nbd settings are invalid:\n  " + string.Join("\n  ", errors));
        if (!TryLoadTls(parsed, out var loaded, out var why))
            throw new StartupException("The nbd settings are invalid:\n  " + why);
        options = parsed;
        tls = loaded;
        WarnAboutMissingExports(parsed, settings);
        foreach (var address in parsed.Listen)
            Listen(address);
        return Task.CompletedTask;
    }

    public async Task ApplyAsync(RuntimeSettings settings)
    {
        var (parsed, errors) = NbdOptions.From(settings.Nbd);
        if (parsed is null)
        {
            log.Error("NBD settings unchanged, the new ones are invalid: {Errors}", string.Join(" ", errors));
            return;
        }
        if (!parsed.Equals(options))
            log.Information("NBD settings changed; new connections negotiate with them");
        // TLS files are read again on every reload, so `hrt config reload` picks up a renewed
        // certificate. The previous credentials are left to the collector: a handshake may be using them.
        if (!TryLoadTls(parsed, out var loaded, out var why))
        {
            log.Error("NBD settings unchanged: {Reason}", why);
            return;
        }
        options = parsed;
        tls = loaded;
        WarnAboutMissingExports(parsed, settings);
        await CloseRevokedAsync(parsed);

        var wanted = parsed.Listen.ToHashSet(StringComparer.OrdinalIgnoreCase);
        lock (gate)
        {
            foreach (var gone in listeners.Keys.Where(k => !wanted.Contains(k)).ToList())
            {
                listeners[gone].Dispose();
                listeners.Remove(gone);
                log.Information("NBD listener {Address} closed", gone);
            }
        }
        foreach (var address in wanted)
        {
            bool known;
            lock (gate)
                known = listeners.ContainsKey(address);
            if (known)
                continue;
            try
            {
                Listen(address);
            }
            catch (StartupException e)
            {
                log.Error("{Reason}", e.Message);
            }
        }
    }

    // A connection whose export is no longer exported to it (removed from nbd.exports, its ACL
    // narrowed, nbd.allow narrowed) ends: what an operator revokes is revoked now, not at the
    // client's next reconnect.
    private Task CloseRevokedAsync(NbdOptions next)
    {
        var closing = new List<Task>();
        foreach (var c in connections.All)
        {
            if (c.IsClosed || c.Export is not { } e)
                continue;
            var (now, _, why) = NbdExports.Find(Targets, next, c.RemoteAddress, c.RequestedName ?? "");
            if (next.Allow.Allows(c.RemoteAddress) && now is not null && ReferenceEquals(now.Lun, e.Lun))
                continue;
            var reason = !next.Allow.Allows(c.RemoteAddress) ? "not in nbd.allow" : now is null ? why : "the name now leads to another LU";
            log.Warning("NBD {Remote}: export {Export} is no longer offered to it ({Why}); closing the connection", c.RemoteText, e.Name, reason);
            closing.Add(c.ShutdownAsync(TimeSpan.FromSeconds(5), "its export was withdrawn"));
        }
        return Task.WhenAll(closing);
    }

    /// <summary>Loads the TLS credentials <paramref name="o"/> names (none when TLS is off); false with the reason when the files cannot be used.</summary>
    private static bool TryLoadTls(NbdOptions o, out NbdTls? loaded, out string why)
    {
        loaded = null;
        why = "";
        if (o.Tls is null)
            return true;
        try
        {
            loaded = NbdTls.Load(o.Tls);
            return true;
        }
        catch (NbdTlsException e)
        {
            why = e.Message;
            return false;
        }
    }

    private void WarnAboutMissingExports(NbdOptions o, RuntimeSettings settings)
    {
        if (o.Exports is null)
            return;
        foreach (var e in o.Exports)
            if (!settings.Luns.Any(l => l.Name == e.Lun))
                log.Warning("nbd.exports names LUN {Lun}, which is not configured; it is offered once a LUN of that name exists", e.Lun);
    }

    private void Listen(string address)
    {
        if (!NbdOptions.TryParseEndPoint(address, out var endPoint))
            throw new StartupException($"The NBD address '{address}' is not an address:port; write it like 127.0.0.1:10809 or [::1]:10809.");
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // SO_REUSEADDR alone (see IscsiFabric.Listen): a restart rebinds at once, a second daemon cannot share the port.
            socket.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
            socket.Bind(endPoint);
            socket.Listen(256);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new StartupException($"The NBD address {address} cannot be opened ({e.Message}); stop whatever listens there (nbd-server, nbdkit, qemu-nbd) or set nbd.listen to another address, or to [] to turn NBD off.");
        }
        var listener = new Listener(socket, (IPEndPoint)socket.LocalEndPoint!);
        lock (gate)
            listeners[address] = listener;
        _ = AcceptLoopAsync(listener); // ends when the listener is disposed
        log.Information("NBD listening on {Address}", Format(listener.EndPoint));
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
                log.Warning("NBD {Address}: accept failed: {Reason}", Format(listener.EndPoint), e.Message);
                await Task.Delay(100);
                continue;
            }
            var o = options;
            if (connections.Count >= o.MaxConnections)
            {
                log.Warning("NBD: refusing a connection from {Remote}: {Count} connections already (nbd.maxConnections)", socket.RemoteEndPoint, connections.Count);
                socket.Dispose();
                continue;
            }
            socket.NoDelay = true;
            var connection = new NbdConnection(this, socket, o, tls, RentSlot(), log);
            connections.Start(connection, connection.RunAsync, connection.RemoteText, released: () =>
            {
                lock (freeSlots)
                    freeSlots.Add(connection.Slot);
            });
        }
    }

    // Nexus names are recycled with the connections that carry them, so a client that reconnects
    // all day does not grow the LUs' per-nexus tables without bound.
    private int RentSlot()
    {
        lock (freeSlots)
        {
            if (freeSlots.Count > 0)
            {
                var slot = freeSlots.Min;
                freeSlots.Remove(slot);
                return slot;
            }
            return ++nextSlot;
        }
    }

    internal static string InitiatorPortName(int slot) => $"nbd,i,0x{slot:x4}";

    /// <summary>The I_T nexus of connection <paramref name="slot"/> to <paramref name="target"/>'s NBD port.</summary>
    internal ItNexus NexusFor(ScsiTarget target, int slot)
    {
        // The NBD port is in the LU's one target port group (the group iSCSI's portal group is in), so ALUA states apply to it alike.
        var port = ports.GetOrAdd(target.Name, static name => new TargetPort($"{name},nbd", name, RelativePortId, Iscsi.IscsiFabric.PortalGroupTag, ProtocolId));
        return Targets.Nexuses.Get(InitiatorPortName(slot), "nbd", port);
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
        // Requests in flight finish (new ones get ESHUTDOWN), then every connection closes.
        await Task.WhenAll(connections.All.Select(c => c.ShutdownAsync(TimeSpan.FromSeconds(10), "the server is shutting down")));
        await connections.WhenAllEndedAsync(TimeSpan.FromSeconds(30));
        tls?.Dispose();
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
