using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using HandlerRuntime.Fabrics.Iscsi.Connections;
using HandlerRuntime.Scsi;
using Serilog;

namespace HandlerRuntime.Fabrics.Nbd;

/// <summary>
/// One NBD client connection: negotiation (NbdConnection.Handshake.cs), then transmission
/// (NbdConnection.Transmission.cs), where this reader takes requests in order and hands them
/// to the SCSI core, and the <see cref="NbdReplySender"/> writes the replies as they complete.
/// The connection is one I_T nexus. Malformed input ends this connection only.
/// </summary>
internal sealed partial class NbdConnection
{
    private readonly NbdFabric fabric;
    private readonly Socket socket;
    private readonly NetworkStream network;
    private readonly NbdReceiver receiver;
    private readonly NbdTls? tls;
    private readonly object gate = new();
    private readonly Stack<NbdRequest> pool = new();
    private readonly WakeSignal room = new();
    private Stream stream;
    private int closed;
    private string? closeReason;
    private int inFlight;
    private long inFlightBytes;
    private bool readerWaiting;
    private TaskCompletionSource? idle;
    private volatile bool shuttingDown;
    private string phase = "negotiating";

    public NbdConnection(NbdFabric fabric, Socket socket, NbdOptions options, NbdTls? tls, int slot, ILogger log)
    {
        this.fabric = fabric;
        this.socket = socket;
        this.tls = tls;
        Options = options;
        Slot = slot;
        Log = log;
        network = new NetworkStream(socket, ownsSocket: false);
        stream = network;
        receiver = new NbdReceiver(network);
        var remote = socket.RemoteEndPoint as IPEndPoint;
        RemoteAddress = remote?.Address is { IsIPv4MappedToIPv6: true } mapped ? mapped.MapToIPv4() : remote?.Address ?? IPAddress.None;
        RemoteText = remote is null ? "?" : remote.AddressFamily == AddressFamily.InterNetworkV6 && !remote.Address.IsIPv4MappedToIPv6
            ? $"[{remote.Address}]:{remote.Port}" : $"{RemoteAddress}:{remote.Port}";
    }

    public NbdOptions Options { get; }
    public ILogger Log { get; }
    public string RemoteText { get; }
    public IPAddress RemoteAddress { get; }
    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;

    /// <summary>A small number unique among live connections: names this connection's I_T nexus.</summary>
    public int Slot { get; }

    /// <summary>The export chosen by GO or EXPORT_NAME; null while negotiating.</summary>
    public NbdExport? Export { get; private set; }

    /// <summary>The name the client asked for (it may be "", the default export).</summary>
    public string? RequestedName { get; private set; }

    public ItNexus? Nexus { get; private set; }

    public NbdTransmissionFlags TransmissionFlags { get; private set; }

    public bool StructuredReplies { get; private set; }

    public bool BaseAllocation { get; private set; }

    public bool TlsActive { get; private set; }

    public string? ClientCertificate { get; private set; }

    /// <summary>The export size the client was told.</summary>
    public long Size { get; private set; }

    /// <summary>The writer of transmission replies; null while negotiating.</summary>
    public NbdReplySender Sender { get; private set; } = null!;

    public bool IsClosed => Volatile.Read(ref closed) != 0;

    /// <summary>The server is stopping: new requests get ESHUTDOWN.</summary>
    public bool ShuttingDown => shuttingDown;

    /// <summary>Runs the connection to its end; never throws.</summary>
    public async Task RunAsync()
    {
        var why = "closed by the client";
        try
        {
            bool transmit;
            using (var handshake = new CancellationTokenSource(Options.HandshakeTimeout))
            {
                try
                {
                    transmit = await NegotiateAsync(handshake.Token);
                }
                catch (OperationCanceledException) when (handshake.IsCancellationRequested && !IsClosed)
                {
                    throw new NbdProtocolException($"negotiation took longer than {Options.HandshakeTimeout.TotalSeconds:0} s (nbd.handshakeTimeoutSeconds)");
                }
            }
            if (transmit)
                why = await TransmitAsync();
        }
        catch (NbdProtocolException e)
        {
            why = "protocol error: " + e.Message;
            Log.Warning("NBD {Remote}: {Reason}; closing this connection", RemoteText, e.Message);
        }
        catch (AuthenticationException e)
        {
            why = "TLS handshake failed: " + e.Message;
            Log.Warning("NBD {Remote}: TLS handshake failed ({Reason}); closing this connection", RemoteText, e.InnerException?.Message ?? e.Message);
        }
        catch (Exception e) when (e is EndOfStreamException or SocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
            if (IsClosed)
                why = closeReason ?? why;
        }
        catch (Exception e)
        {
            why = "internal error";
            Log.Error(e, "NBD {Remote}: connection failed", RemoteText);
        }
        finally
        {
            await EndAsync(why);
        }
    }

    /// <summary>
    /// The end: requests still in the core finish (their buffers are in use there) and their
    /// replies go out, as NBD_CMD_DISC asks; a client that does not read loses them.
    /// </summary>
    private async Task EndAsync(string why)
    {
        phase = "closing";
        if (Sender is { } batch && !IsClosed)
        {
            try
            {
                await batch.FlushBatchAsync(); // the replies the reader left queued (a DISC right behind its requests)
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException or OperationCanceledException)
            {
            }
        }
        await WaitIdleAsync(TimeSpan.FromSeconds(30));
        if (Sender is { } sender)
        {
            var stop = sender.StopAsync();
            if (await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(2))) != stop)
                Close("the client does not read its replies");
            await stop;
        }
        Close(why);
        await WaitIdleAsync(TimeSpan.FromSeconds(30));
        if (Nexus is not null)
            Export!.Target.NexusLost(Nexus);
        receiver.Dispose();
        Sender?.Dispose();
        await stream.DisposeAsync();
        socket.Dispose();
        Log.Information("NBD {Remote}: connection ended ({Reason})", RemoteText, closeReason ?? why);
    }

    /// <summary>Closes the socket; the reader and the sender then end.</summary>
    public void Close(string why)
    {
        if (Interlocked.Exchange(ref closed, 1) != 0)
            return;
        closeReason = why;
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
        socket.Close();
    }

    /// <summary>Stops taking requests (they get ESHUTDOWN), lets those in flight finish, then closes.</summary>
    public async Task ShutdownAsync(TimeSpan grace, string why)
    {
        shuttingDown = true;
        if (Export is not null)
            await WaitIdleAsync(grace);
        Close(why);
    }

    // ---- requests in flight ----

    /// <summary>A pooled request counted against the in-flight limits.</summary>
    private NbdRequest Rent(long budgetBytes)
    {
        NbdRequest? r;
        lock (gate)
        {
            inFlight++;
            inFlightBytes += budgetBytes;
            pool.TryPop(out r);
        }
        r ??= new NbdRequest(this);
        r.BudgetBytes = budgetBytes;
        return r;
    }

    /// <summary>The reply is on the wire (or was dropped): the request goes back to the pool and its budget is free.</summary>
    public void Recycle(NbdRequest r)
    {
        var budget = r.BudgetBytes;
        r.Reset();
        var wakeReader = false;
        TaskCompletionSource? nowIdle = null;
        lock (gate)
        {
            inFlight--;
            inFlightBytes -= budget;
            if (pool.Count < Options.MaxInFlightRequests)
                pool.Push(r);
            if (readerWaiting && HasRoomLocked(0))
            {
                readerWaiting = false;
                wakeReader = true;
            }
            if (inFlight == 0 && idle is not null)
            {
                nowIdle = idle;
                idle = null;
            }
        }
        if (wakeReader)
            room.Set();
        nowIdle?.TrySetResult();
    }

    // Room for one more request of budget bytes: under both caps, or nothing in flight at all.
    private bool HasRoomLocked(long budget)
        => inFlight == 0 || (inFlight < Options.MaxInFlightRequests && inFlightBytes + budget <= Options.MaxInFlightBytes);

    /// <summary>Waits until the caps allow a request of <paramref name="budget"/> bytes (the reader's backpressure).</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WaitForRoomAsync(long budget)
    {
        while (true)
        {
            lock (gate)
            {
                if (HasRoomLocked(budget))
                    return;
                room.Reset();
                readerWaiting = true;
            }
            await Sender.FlushBatchAsync(); // replies the reader left queued must leave, or nothing ever frees room
            await room.WaitAsync();
        }
    }

    private async Task WaitIdleAsync(TimeSpan timeout)
    {
        Task wait;
        lock (gate)
        {
            if (inFlight == 0)
                return;
            idle ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            wait = idle.Task;
        }
        if (await Task.WhenAny(wait, Task.Delay(timeout)) != wait)
            Log.Warning("NBD {Remote}: requests still running {Seconds} s after the connection ended", RemoteText, timeout.TotalSeconds);
    }

    public SessionInfo Describe()
    {
        int n;
        long bytes;
        lock (gate)
            (n, bytes) = (inFlight, inFlightBytes);
        var details = new Dictionary<string, string>
        {
            ["phase"] = phase,
            ["tls"] = TlsActive ? "yes" : "no",
            ["since"] = Created.ToString("u"),
        };
        if (Export is { } e)
        {
            details["export"] = e.Name;
            details["lun"] = e.Number.ToString();
            details["size"] = Size.ToString();
            details["transmissionFlags"] = TransmissionFlags.ToString();
            details["structuredReplies"] = StructuredReplies ? "yes" : "no";
            details["baseAllocation"] = BaseAllocation ? "yes" : "no";
            details["inFlight"] = n.ToString();
            details["inFlightBytes"] = bytes.ToString();
        }
        if (ClientCertificate is not null)
            details["clientCertificate"] = ClientCertificate;
        return new SessionInfo("nbd", Export?.Target.Name ?? "(negotiating)", RemoteAddress.ToString(), Nexus?.InitiatorPort ?? NbdFabric.InitiatorPortName(Slot),
            [RemoteText], "None", "None", details);
    }
}

/// <summary>The client broke the protocol; the message says how. The connection ends.</summary>
internal sealed class NbdProtocolException(string message) : Exception(message);
