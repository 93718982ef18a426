using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using HandlerRuntime.Buffers;
using HandlerRuntime.Fabrics.Iscsi.Protocol;
using HandlerRuntime.Fabrics.Iscsi.Sessions;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Fabrics.Iscsi.Connections;

/// <summary>
/// The one writer of a connection. Everything the target sends goes through its queue and
/// is written by one thread at a time, so StatSN is assigned in wire order without a lock,
/// and PDUs that complete together leave in one send call: headers and small data are
/// gathered in a pinned buffer, large read data goes to the socket straight from the
/// task's pooled buffer.
/// <para>
/// Who writes: responses that complete on the connection's own reader thread while it
/// works through a received batch (ram, page-cache hits) are left queued, and the reader
/// writes them itself in one send before it next waits for input (<see cref="FlushBatchAsync"/>):
/// no thread hop and one send per batch. A response that completes on a pool thread (disk
/// I/O) is written by that thread when no one else is writing. Control PDUs, large read
/// data and sends the initiator is not ready for go to the writer loop.
/// </para>
/// </summary>
internal sealed class PduSender : IDisposable, IDeferredSend
{
    private const int BufferSize = 256 * 1024;
    /// <summary>Read data larger than this is left to the writer loop: the reader must not wait for a slow socket.</summary>
    private const int ReaderWritesDataUpTo = 64 * 1024;
    private static readonly byte[] Zeros = new byte[4];

    /// <summary>The sender whose reader is running synchronously on this thread (set around the reader's calls into the core).</summary>
    [ThreadStatic]
    private static PduSender? readerOnThisThread;

    private readonly Socket socket;
    private readonly IscsiConnection connection;
    private readonly object gate = new();
    private readonly Queue<Outbound> pending = new();
    private readonly WakeSignal wake = new();
    private readonly BufferPool.PooledBuffer buffer = BufferPool.Shared.Rent(BufferSize);
    private bool draining;   // a thread (the loop or the reader) is writing; it empties the queue before it stops
    private bool loopParked; // the loop waits for wake
    private bool completed;  // no more PDUs are taken
    private bool handedOver; // the reader's last send did not complete at once: the loop finishes it, then drains
    private ValueTask handedOverSend;
    private int used;
    private int backlog;
    private Task? loop;

    public PduSender(Socket socket, IscsiConnection connection, uint initialStatSN)
    {
        this.socket = socket;
        this.connection = connection;
        StatSN = initialStatSN;
    }

    /// <summary>The next StatSN to be sent.</summary>
    public uint StatSN { get; private set; }

    public bool HeaderDigest { get; set; }
    public bool DataDigest { get; set; }

    /// <summary>The initiator's MaxRecvDataSegmentLength.</summary>
    public int MaxSegment { get; set; } = 8192;

    /// <summary>The session's MaxBurstLength (Data-In sequences are cut at it).</summary>
    public int MaxBurst { get; set; } = 262144;

    /// <summary>Items queued but not yet written.</summary>
    public int Backlog => Volatile.Read(ref backlog);

    public void Start() => loop = Task.Run(RunAsync);

    /// <summary>Stops taking work and waits for the writer to finish what is queued.</summary>
    public async Task StopAsync()
    {
        bool signal;
        lock (gate)
        {
            completed = true;
            signal = loopParked;
            loopParked = false;
        }
        if (signal)
            wake.Set();
        if (loop is not null)
            await loop;
        else
            Drain();
    }

    /// <summary>
    /// Marks this thread as the connection's reader until the returned scope ends: what
    /// completes meanwhile is queued without waking the loop, and the reader writes it
    /// with <see cref="FlushBatchAsync"/> before it waits for anything. Only for code that
    /// runs synchronously (no await inside the scope).
    /// </summary>
    public ReaderScope EnterReader()
    {
        var previous = readerOnThisThread;
        readerOnThisThread = this;
        return new ReaderScope(previous);
    }

    public readonly struct ReaderScope(PduSender? previous) : IDisposable
    {
        public void Dispose() => readerOnThisThread = previous;
    }

    /// <summary>
    /// The reader is about to wait (for input, or anything else): what it left queued goes
    /// out now, on this thread, unless a writer is already at work (it takes it along).
    /// </summary>
    public ValueTask FlushBatchAsync()
    {
        lock (gate)
        {
            if (draining || pending.Count == 0)
                return default;
            draining = true;
        }
        return DrainAsync(byReader: true);
    }

    public bool EnqueueResponse(IscsiCommand cmd) => Enqueue(new Outbound(OutboundKind.Response, cmd, null, 0, 0, 0, 0, 0, 0));

    public bool EnqueueR2T(uint itt, ulong lun, uint ttt, uint r2tsn, int offset, int length)
        => Enqueue(new Outbound(OutboundKind.R2T, null, null, itt, ttt, r2tsn, offset, length, lun));

    public bool Enqueue(ControlPdu pdu)
    {
        if (Enqueue(new Outbound(OutboundKind.Control, null, pdu, 0, 0, 0, 0, 0, 0)))
            return true;
        pdu.Data?.Dispose();
        return false;
    }

    private bool Enqueue(in Outbound item)
    {
        var wakeLoop = false;
        lock (gate)
        {
            if (completed)
                return false;
            pending.Enqueue(item);
            backlog++;
            // Someone writes it: the thread draining now, or this connection's reader before it waits.
            if (draining || !loopParked || ReferenceEquals(readerOnThisThread, this))
                return true;
            if (item.Kind == OutboundKind.Control)
            {
                loopParked = false;
                wakeLoop = true;
            }
            else
            {
                draining = true; // a response completed on a pool thread: this thread writes it
            }
        }
        if (wakeLoop)
        {
            wake.Set();
            return true;
        }
        // Waking the loop would cost a thread switch per command (more than the send itself).
        // In a handler's completion batch, the batch's end sends (one send for all it completed).
        if (!CompletionBatch.TryDefer(this))
            DrainHere();
        return true;
    }

    void IDeferredSend.Send() => DrainHere();

    /// <summary>
    /// Writes the queue on this thread (draining is set). Like the reader, this thread never
    /// waits for the initiator: a send that cannot finish at once is handed to the loop.
    /// </summary>
    private void DrainHere()
    {
        var drain = DrainAsync(byReader: true);
        if (drain.IsCompleted)
            drain.GetAwaiter().GetResult();
        else
            _ = drain.AsTask(); // DrainAsync handles its own failures
    }

    private async Task RunAsync()
    {
        while (true)
        {
            bool park;
            var takeOver = false;
            ValueTask unfinished = default;
            lock (gate)
            {
                if (handedOver)
                {
                    // The reader left a send that waits for the initiator; draining stays set, now ours.
                    handedOver = false;
                    unfinished = handedOverSend;
                    handedOverSend = default;
                    takeOver = true;
                    park = false;
                }
                // A closed connection writes nothing more: what is queued is dropped below.
                else if (completed && !draining && (pending.Count == 0 || connection.IsClosed))
                {
                    break;
                }
                else
                {
                    park = draining || pending.Count == 0;
                    if (park)
                    {
                        wake.Reset();
                        loopParked = true;
                    }
                    else
                    {
                        draining = true;
                    }
                }
            }
            if (park)
            {
                await wake.WaitAsync();
                continue;
            }
            if (takeOver && !await FinishSendAsync(unfinished))
                continue;
            await DrainAsync(byReader: false);
        }
        Drain();
    }

    /// <summary>Waits for a send the reader started; false when the connection failed (the sender is then stopped).</summary>
    private async ValueTask<bool> FinishSendAsync(ValueTask send)
    {
        try
        {
            await send;
            return true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
            connection.Close("send failed: " + e.Message);
            Stop();
            return false;
        }
    }

    /// <summary>Writes queued PDUs until none is left; the caller has set <see cref="draining"/>.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask DrainAsync(bool byReader)
    {
        try
        {
            while (true)
            {
                Outbound item;
                var handOver = false;
                lock (gate)
                {
                    if (!pending.TryPeek(out item))
                    {
                        item = default;
                    }
                    else if (byReader && LeftToLoop(item))
                    {
                        handOver = true; // the loop writes it; the reader goes back to reading
                    }
                    else
                    {
                        pending.Dequeue();
                        backlog--;
                    }
                }
                if (item.Kind == OutboundKind.None || handOver)
                {
                    var send = FlushAsync();
                    if (byReader && !send.IsCompleted)
                    {
                        // The initiator is not taking data now: the loop finishes this send and
                        // the drain, the reader goes back to reading (it never waits on the initiator).
                        bool wakeLoop;
                        lock (gate)
                        {
                            handedOver = true;
                            handedOverSend = send;
                            wakeLoop = loopParked;
                            loopParked = false;
                        }
                        if (wakeLoop)
                            wake.Set();
                        return;
                    }
                    await send;
                    bool signal;
                    lock (gate)
                    {
                        if (pending.Count > 0 && !handOver)
                            continue;
                        draining = false;
                        // The loop parked while this drain held the queue: wake it for what is
                        // left, or to end if the sender was stopped meanwhile (StopAsync waits for it).
                        signal = (pending.Count > 0 || completed) && loopParked;
                        if (signal)
                            loopParked = false;
                    }
                    if (signal)
                        wake.Set();
                    return;
                }
                switch (item.Kind)
                {
                    case OutboundKind.Response:
                        await WriteResponseAsync(item.Command!);
                        break;
                    case OutboundKind.R2T:
                        await WriteR2TAsync(item);
                        break;
                    default:
                        if (!await WriteControlAsync(item.Pdu!))
                        {
                            Stop();
                            return;
                        }
                        break;
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
            connection.Close("send failed: " + e.Message);
            Stop();
        }
        catch (Exception e)
        {
            connection.Log.Error(e, "iSCSI: the sender of {Remote} failed", connection.RemoteEndPoint);
            connection.Close("sender failed");
            Stop();
        }
    }

    // Control PDUs (their after-send actions) and large read data (a send that may wait for the initiator) stay with the loop.
    private static bool LeftToLoop(in Outbound item)
        => item.Kind == OutboundKind.Control
           || (item.Kind == OutboundKind.Response && item.Command!.Task is { DataInBuffer: not null } t && t.DataInLength > ReaderWritesDataUpTo);

    // The connection is over: nothing more is written; the loop ends and drops what is queued.
    private void Stop()
    {
        bool signal;
        lock (gate)
        {
            completed = true;
            draining = false;
            signal = loopParked;
            loopParked = false;
        }
        if (signal)
            wake.Set();
    }

    // Whatever is still queued when the connection ends: commands end without a response.
    private void Drain()
    {
        while (true)
        {
            Outbound item;
            lock (gate)
            {
                if (!pending.TryDequeue(out item))
                    return;
                backlog--;
            }
            if (item.Command is { } cmd)
                cmd.Session.Retire(cmd);
            item.Pdu?.Data?.Dispose();
        }
    }

    // ---- framing ----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask EnsureSpaceAsync(int bytes)
    {
        if (BufferSize - used < bytes)
            await FlushAsync();
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushAsync()
    {
        var sent = 0;
        while (sent < used)
            sent += await socket.SendAsync(buffer.Array.AsMemory(sent, used - sent), SocketFlags.None);
        used = 0;
    }

    /// <summary>A zeroed 48-byte header at the end of the buffer (space was ensured).</summary>
    private Span<byte> Header()
    {
        var h = buffer.Array.AsSpan(used, Bhs.Length);
        h.Clear();
        return h;
    }

    /// <summary>Commits the header written by <see cref="Header"/>, with its digest when negotiated.</summary>
    private void CommitHeader(bool digests)
    {
        if (digests && HeaderDigest)
        {
            var crc = Crc32C.Compute(buffer.Array.AsSpan(used, Bhs.Length));
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(buffer.Array.AsSpan(used + Bhs.Length), crc); // least significant byte first
            used += 4;
        }
        used += Bhs.Length;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteDataAsync(ReadOnlyMemory<byte> data, bool digests)
    {
        if (data.IsEmpty)
            return;
        var pad = Bhs.Padding(data.Length);
        var digest = digests && DataDigest;
        var tail = pad + (digest ? 4 : 0);
        if (data.Length + tail <= BufferSize - used || data.Length + tail <= BufferSize / 4)
        {
            await EnsureSpaceAsync(data.Length + tail);
            data.Span.CopyTo(buffer.Array.AsSpan(used));
            used += data.Length;
        }
        else
        {
            // Large data: send what is gathered, then the data from where it lies.
            await FlushAsync();
            var sent = 0;
            while (sent < data.Length)
                sent += await socket.SendAsync(data[sent..], SocketFlags.None);
        }
        await EnsureSpaceAsync(tail);
        buffer.Array.AsSpan(used, pad).Clear();
        used += pad;
        if (digest)
        {
            var crc = ~Crc32C.Append(Crc32C.Append(~0u, data.Span), Zeros.AsSpan(0, pad));
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(buffer.Array.AsSpan(used), crc);
            used += 4;
        }
    }

    private void PutWindow(Span<byte> h, IscsiSession? session)
    {
        if (session is null)
            return;
        Bhs.PutWindow(h, session.Window());
    }

    // ---- PDUs ----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> WriteControlAsync(ControlPdu pdu)
    {
        try
        {
            await EnsureSpaceAsync(Bhs.Length + 4);
            var h = Header();
            pdu.Header.CopyTo(h);
            Bhs.PutDataSegmentLength(h, pdu.DataLength);
            if (pdu.StatSN != StatSNUse.None)
                Bhs.PutStatSN(h, pdu.StatSN == StatSNUse.Advance ? StatSN++ : StatSN);
            if (pdu.FillWindow)
                PutWindow(h, connection.Session);
            CommitHeader(!pdu.NoDigests);
            if (pdu.Data is not null)
                await WriteDataAsync(pdu.Data.Memory[..pdu.DataLength], !pdu.NoDigests);
        }
        finally
        {
            pdu.Data?.Dispose();
            pdu.Data = null;
        }
        if (pdu.CloseAfter || pdu.AfterSend is not null)
            await FlushAsync();
        pdu.AfterSend?.Invoke();
        if (pdu.CloseAfter)
        {
            connection.Close("logged out");
            return false;
        }
        return true;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteR2TAsync(Outbound r2t)
    {
        await EnsureSpaceAsync(Bhs.Length + 4);
        var h = Header();
        Bhs.PutOpcode(h, Opcode.ReadyToTransfer);
        Bhs.PutFlags(h, Bhs.FinalFlag);
        Bhs.PutLunField(h, r2t.Lun);
        Bhs.PutInitiatorTaskTag(h, r2t.Itt);
        Bhs.PutTargetTransferTag(h, r2t.Ttt);
        Bhs.PutStatSN(h, StatSN); // the next StatSN, not consumed
        PutWindow(h, connection.Session);
        Bhs.R2T.PutR2TSN(h, r2t.R2TSN);
        Bhs.R2T.PutBufferOffset(h, (uint)r2t.Offset);
        Bhs.R2T.PutDesiredDataTransferLength(h, (uint)r2t.Length);
        CommitHeader(true);
    }

    /// <summary>
    /// Data-In PDUs (cut at the initiator's MaxRecvDataSegmentLength, F at each
    /// MaxBurstLength), with the status in the last one when there is no sense data
    /// (RFC 7143 11.7.4), else a SCSI Response. Residuals follow RFC 7143 11.4.5.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteResponseAsync(IscsiCommand cmd)
    {
        var session = cmd.Session;
        session.Responding(cmd);
        try
        {
            var task = cmd.Task;
            var produced = task.DataInBuffer is null ? 0 : task.DataInLength;
            var expectedIn = cmd.Read ? task.ExpectedDataInLength : 0;
            var send = Math.Min(produced, expectedIn);

            var residualFlags = ResidualFlags.None;
            uint residual = 0;
            if (cmd.Read || produced > 0)
            {
                if (produced > expectedIn) { residualFlags = ResidualFlags.Overflow; residual = (uint)(produced - expectedIn); }
                else if (produced < expectedIn) { residualFlags = ResidualFlags.Underflow; residual = (uint)(expectedIn - produced); }
            }
            else if (cmd.Write && cmd.Spdtl >= 0)
            {
                if (cmd.Spdtl > cmd.Edtl) { residualFlags = ResidualFlags.Overflow; residual = (uint)Math.Min(uint.MaxValue, cmd.Spdtl - cmd.Edtl); }
                else if (cmd.Spdtl < cmd.Edtl) { residualFlags = ResidualFlags.Underflow; residual = (uint)(cmd.Edtl - cmd.Spdtl); }
            }
            else if (!cmd.Read && cmd.Edtl > 0 && cmd.Spdtl < 0 && !cmd.Write)
            {
                residualFlags = ResidualFlags.Underflow;
                residual = (uint)cmd.Edtl;
            }

            var statusInData = send > 0 && task.SenseLength == 0;
            var offset = 0;
            var burstLeft = MaxBurst;
            while (offset < send)
            {
                var n = Math.Min(Math.Min(send - offset, MaxSegment), burstLeft);
                var last = offset + n == send;
                burstLeft -= n;
                var endOfSequence = last || burstLeft == 0;
                await EnsureSpaceAsync(Bhs.Length + 4);
                var h = Header();
                Bhs.PutOpcode(h, Opcode.DataIn);
                var flags = endOfSequence ? Bhs.FinalFlag : (byte)0;
                Bhs.PutDataSegmentLength(h, n);
                Bhs.PutLunField(h, cmd.LunField);
                Bhs.PutInitiatorTaskTag(h, cmd.Itt);
                Bhs.PutTargetTransferTag(h, Bhs.ReservedTag);
                if (last && statusInData)
                {
                    flags |= (byte)(Bhs.DataIn.StatusFlag | (byte)residualFlags);
                    Bhs.DataIn.PutStatus(h, (byte)task.Status);
                    Bhs.PutStatSN(h, StatSN++);
                    Bhs.DataIn.PutResidualCount(h, residual);
                }
                Bhs.PutFlags(h, flags);
                PutWindow(h, session);
                Bhs.DataIn.PutDataSN(h, cmd.DataInPdus++);
                Bhs.DataIn.PutBufferOffset(h, (uint)offset);
                CommitHeader(true);
                await WriteDataAsync(task.DataInBuffer!.Memory.Slice(offset, n), true);
                offset += n;
                if (burstLeft == 0)
                    burstLeft = MaxBurst;
            }
            if (!statusInData)
            {
                var senseLength = task.SenseLength;
                var dataLength = senseLength == 0 ? 0 : Bhs.ScsiResponse.SenseLengthSize + senseLength;
                await EnsureSpaceAsync(Bhs.Length + 4);
                var h = Header();
                Bhs.PutOpcode(h, Opcode.ScsiResponse);
                Bhs.PutFlags(h, (byte)(Bhs.FinalFlag | (byte)residualFlags));
                Bhs.ScsiResponse.PutResponse(h, Bhs.ScsiResponse.CommandCompleted);
                Bhs.ScsiResponse.PutStatus(h, (byte)task.Status);
                Bhs.PutDataSegmentLength(h, dataLength);
                Bhs.PutInitiatorTaskTag(h, cmd.Itt);
                Bhs.PutStatSN(h, StatSN++);
                PutWindow(h, session);
                Bhs.ScsiResponse.PutExpDataSN(h, cmd.DataInPdus + cmd.NextR2TSN);
                Bhs.ScsiResponse.PutResidualCount(h, residual);
                CommitHeader(true);
                if (dataLength > 0)
                {
                    // SenseLength (2 bytes) then the sense data; gathered in the buffer.
                    var digest = DataDigest;
                    var total = dataLength + Bhs.Padding(dataLength) + (digest ? 4 : 0);
                    await EnsureSpaceAsync(total);
                    var d = buffer.Array.AsSpan(used, dataLength + Bhs.Padding(dataLength));
                    d.Clear();
                    Bhs.ScsiResponse.PutSenseLength(d, (ushort)senseLength);
                    task.SenseBytes.CopyTo(d[Bhs.ScsiResponse.SenseLengthSize..]);
                    used += d.Length;
                    if (digest)
                    {
                        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(buffer.Array.AsSpan(used), Crc32C.Compute(d));
                        used += 4;
                    }
                }
            }
        }
        finally
        {
            session.Recycle(cmd);
        }
    }

    public void Dispose() => buffer.Dispose();

    private enum OutboundKind : byte { None, Response, R2T, Control }

    private readonly record struct Outbound(OutboundKind Kind, IscsiCommand? Command, ControlPdu? Pdu, uint Itt, uint Ttt, uint R2TSN, int Offset, int Length, ulong Lun);
}

/// <summary>A reusable single-waiter signal for the writer loop: waiting and waking allocate nothing.</summary>
internal sealed class WakeSignal : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> core = new() { RunContinuationsAsynchronously = true };

    /// <summary>Arms the signal for the next wait; call before the waiter announces that it waits.</summary>
    public void Reset() => core.Reset();

    public void Set() => core.SetResult(true);

    public ValueTask WaitAsync() => new(this, core.Version);

    void IValueTaskSource.GetResult(short token) => core.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => core.GetStatus(token);
    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => core.OnCompleted(continuation, state, token, flags);
}
