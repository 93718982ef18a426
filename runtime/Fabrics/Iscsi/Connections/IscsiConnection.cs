using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using HandlerRuntime.Buffers;
using HandlerRuntime.Fabrics.Iscsi.Login;
using HandlerRuntime.Fabrics.Iscsi.Protocol;
using HandlerRuntime.Fabrics.Iscsi.Sessions;
using Serilog;

namespace HandlerRuntime.Fabrics.Iscsi.Connections;

/// <summary>
/// One TCP connection: the login phase (<see cref="LoginPhase"/>), then the full feature
/// phase, where this reader takes PDUs in order and hands them to the session, and the
/// <see cref="PduSender"/> writes whatever the target answers. A protocol violation ends
/// this connection only.
/// </summary>
internal sealed partial class IscsiConnection
{
    private const int MaxAhsLength = 255 * 4;
    private readonly Socket socket;
    private readonly SocketReceiver receiver;
    private readonly byte[] header = new byte[Bhs.Length + MaxAhsLength + 4];
    private readonly byte[] discard = new byte[16 * 1024];
    private readonly byte[] digestBytes = new byte[4];
    private readonly CancellationTokenSource closing = new();
    private int closed;
    private int ahsLength;
    private int dataLength;
    private long lastActivity = Environment.TickCount64;
    private uint pingTtt = Bhs.ReservedTag;
    private long pingSentAt;
    private PendingText? pendingText;

    public IscsiConnection(IscsiFabric fabric, Socket socket, IscsiOptions options, ILogger log)
    {
        Fabric = fabric;
        this.socket = socket;
        Options = options;
        Log = log;
        receiver = new SocketReceiver(socket);
        RemoteEndPoint = socket.RemoteEndPoint?.ToString() ?? "?";
        LocalEndPoint = socket.LocalEndPoint as IPEndPoint;
        Sender = new PduSender(socket, this, (uint)Random.Shared.Next());
        receiver.BeforeWait = Sender.FlushBatchAsync; // responses of a received batch leave before the reader waits for more
    }

    public IscsiFabric Fabric { get; }
    public IscsiOptions Options { get; }
    public ILogger Log { get; }
    public string RemoteEndPoint { get; }
    public IPEndPoint? LocalEndPoint { get; }
    public PduSender Sender { get; }
    public IscsiSession? Session { get; private set; }
    public ushort Cid { get; private set; }
    public ConnectionParameters Parameters { get; } = new();
    public bool IsClosed => Volatile.Read(ref closed) != 0;

    /// <summary>Runs the connection to its end; never throws. The fabric releases it when this returns.</summary>
    public async Task RunAsync()
    {
        var why = "closed by the initiator";
        try
        {
            Sender.Start();
            if (await LoginAsync())
            {
                using var keepAlive = new CancellationTokenSource();
                var pings = KeepAliveAsync(keepAlive.Token);
                try
                {
                    await FullFeatureAsync();
                }
                finally
                {
                    keepAlive.Cancel();
                    await pings;
                }
            }
        }
        catch (ProtocolException e)
        {
            why = "protocol error: " + e.Message;
            Log.Warning("iSCSI {Remote}: {Reason}; closing this connection", RemoteEndPoint, e.Message);
            if (e.HeaderTrusted && Session is not null && !IsClosed)
                Reject(e.Reason);
        }
        catch (Exception e) when (e is EndOfStreamException or SocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
            if (IsClosed)
                why = closeReason ?? why;
        }
        catch (Exception e)
        {
            why = "internal error";
            Log.Error(e, "iSCSI {Remote}: connection failed", RemoteEndPoint);
        }
        finally
        {
            await EndAsync(why);
        }
    }

    /// <summary>
    /// Tears the connection down. Each step runs whatever the one before it did: a failing
    /// step must never leave the socket open or the session holding this connection.
    /// </summary>
    private async Task EndAsync(string why)
    {
        try
        {
            // Nexus loss first, before the sender drains: an initiator that dropped its last
            // connection may be logging in again already, and must find PREVENT and RESERVE gone.
            if (Session is { } lost && lost.IsLastConnection(this))
                lost.EndNexus();
            await StopSenderAsync(); // lets a final Reject or logout response out
        }
        catch (Exception e)
        {
            Log.Error(e, "iSCSI {Remote}: ending the connection failed", RemoteEndPoint);
        }
        Close(why);
        try
        {
            if (Session is { } s)
                await s.ConnectionClosedAsync(this);
        }
        catch (Exception e)
        {
            Log.Error(e, "iSCSI {Remote}: releasing the connection from its session failed", RemoteEndPoint);
        }
        receiver.Dispose();
        Sender.Dispose();
        closing.Dispose();
        Log.Debug("iSCSI {Remote}: connection ended ({Reason})", RemoteEndPoint, why);
    }

    private string? closeReason;

    /// <summary>Stops the sender, giving queued PDUs a moment to leave; an initiator that does not read loses them.</summary>
    private async Task StopSenderAsync()
    {
        var stop = Sender.StopAsync();
        if (await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(2))) != stop)
            Close("the initiator does not read");
        await stop;
    }

    /// <summary>Closes the socket; the reader and the sender then end.</summary>
    /// <summary>
    /// Whether the peer closed the connection though its end may not be processed yet: the
    /// socket is readable with nothing to read (a FIN), or gone. Does not consume anything.
    /// </summary>
    public bool ClosedByPeer
    {
        get
        {
            try
            {
                return IsClosed || (socket.Poll(0, SelectMode.SelectRead) && socket.Available == 0);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return true;
            }
        }
    }

    public void Close(string why)
    {
        if (Interlocked.Exchange(ref closed, 1) != 0)
            return;
        closeReason = why;
        Sender.ConnectionClosed();
        try { closing.Cancel(); } catch (ObjectDisposedException) { }
        try { socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        socket.Close();
    }

    // ---- reading ----

    /// <summary>Reads a BHS, its AHS and header digest into <see cref="header"/>.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadHeaderAsync(bool digests)
    {
        var ct = closing.Token;
        await receiver.ReadExactAsync(header.AsMemory(0, Bhs.Length), ct);
        lastActivity = Environment.TickCount64;
        ahsLength = Bhs.TotalAhsLength(header);
        dataLength = Bhs.DataSegmentLength(header);
        if (ahsLength > 0)
            await receiver.ReadExactAsync(header.AsMemory(Bhs.Length, ahsLength), ct);
        if (digests && Parameters.HeaderDigest)
        {
            await receiver.ReadExactAsync(digestBytes, ct);
            var expected = BinaryPrimitives.ReadUInt32LittleEndian(digestBytes);
            if (Crc32C.Compute(header.AsSpan(0, Bhs.Length + ahsLength)) != expected)
                throw new ProtocolException(RejectReason.ProtocolError, "header digest mismatch", headerTrusted: false);
        }
    }

    /// <summary>
    /// Reads the data segment: the first <paramref name="keep"/>.Length bytes into
    /// <paramref name="keep"/>, the rest (and padding) discarded, and checks the data digest.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadSegmentAsync(Memory<byte> keep, bool digests = true)
    {
        var ct = closing.Token;
        var digest = digests && Parameters.DataDigest && dataLength > 0;
        var crc = ~0u;
        if (!keep.IsEmpty)
        {
            await receiver.ReadExactAsync(keep, ct);
            if (digest)
                crc = Crc32C.Append(crc, keep.Span);
        }
        var rest = dataLength - keep.Length + Bhs.Padding(dataLength);
        while (rest > 0)
        {
            var n = Math.Min(rest, discard.Length);
            await receiver.ReadExactAsync(discard.AsMemory(0, n), ct);
            if (digest)
                crc = Crc32C.Append(crc, discard.AsSpan(0, n));
            rest -= n;
        }
        if (digest)
        {
            await receiver.ReadExactAsync(digestBytes, ct);
            if (~crc != BinaryPrimitives.ReadUInt32LittleEndian(digestBytes))
                throw new ProtocolException(RejectReason.DataDigestError, "data digest mismatch");
        }
    }

    private ValueTask SkipSegmentAsync() => ReadSegmentAsync(default);

    /// <summary>Reads the whole data segment into a pooled buffer (text, ping data).</summary>
    private async ValueTask<BufferPool.PooledBuffer?> ReadSegmentPooledAsync()
    {
        if (dataLength == 0)
            return null;
        var b = BufferPool.Shared.Rent(dataLength);
        try
        {
            await ReadSegmentAsync(b.Memory);
            return b;
        }
        catch
        {
            b.Dispose();
            throw;
        }
    }

    // ---- sending helpers ----

    /// <summary>Rejects the PDU in <see cref="header"/> (RFC 7143 11.17).</summary>
    private void Reject(RejectReason reason)
    {
        var pdu = ControlPdu.Create(Opcode.Reject, Bhs.FinalFlag, Bhs.ReservedTag, header.AsSpan(0, Bhs.Length));
        Bhs.Reject.PutReason(pdu.Header, reason);
        Sender.Enqueue(pdu);
    }

    // ---- keep-alive ----

    /// <summary>Pings an idle initiator with NOP-In and drops the connection when it stops answering.</summary>
    private async Task KeepAliveAsync(CancellationToken ct)
    {
        if (Options.NopInInterval <= TimeSpan.Zero)
            return;
        var tick = TimeSpan.FromMilliseconds(Math.Clamp(Options.NopInInterval.TotalMilliseconds / 4, 100, 1000));
        using var timer = new PeriodicTimer(tick);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                var now = Environment.TickCount64;
                var idle = now - Volatile.Read(ref lastActivity);
                if (pingTtt != Bhs.ReservedTag)
                {
                    if (idle < now - pingSentAt)
                    {
                        pingTtt = Bhs.ReservedTag; // something arrived since the ping: alive
                    }
                    else if (now - pingSentAt > Options.NopInTimeout.TotalMilliseconds)
                    {
                        Log.Warning("iSCSI {Remote}: no answer to NOP-In for {Seconds} s; dropping the connection", RemoteEndPoint, Options.NopInTimeout.TotalSeconds);
                        Close("NOP-In timeout");
                        return;
                    }
                    continue;
                }
                if (idle >= Options.NopInInterval.TotalMilliseconds)
                {
                    pingTtt = Session!.NextTtt();
                    pingSentAt = now;
                    var pdu = ControlPdu.Create(Opcode.NopIn, Bhs.FinalFlag, Bhs.ReservedTag);
                    Bhs.PutTargetTransferTag(pdu.Header, pingTtt);
                    pdu.StatSN = StatSNUse.Current;
                    Sender.Enqueue(pdu);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private sealed class PendingText(uint ttt, byte[] text)
    {
        public uint Ttt { get; } = ttt;
        public byte[] Text { get; } = text;
        public int Offset { get; set; }
    }
}
