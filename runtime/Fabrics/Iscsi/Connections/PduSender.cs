using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using HandlerRuntime.Fabrics.Iscsi.Sessions;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Fabrics.Iscsi.Connections;

/// <summary>
/// The writer loop of a connection. Everything the target sends goes through its queue and
/// is written by one thread at a time through the connection's <see cref="PduEncoder"/>, so
/// StatSN is assigned in wire order without a lock, and PDUs that complete together leave in
/// one send call.
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
    /// <summary>Read data larger than this is left to the writer loop: the reader must not wait for a slow socket.</summary>
    private const int ReaderWritesDataUpTo = 64 * 1024;

    /// <summary>The sender whose reader is running synchronously on this thread (set around the reader's calls into the core).</summary>
    [ThreadStatic]
    private static PduSender? readerOnThisThread;

    private readonly IscsiConnection connection;
    private readonly PduEncoder encoder;
    private readonly object gate = new();
    private readonly Queue<Outbound> pending = new();
    private readonly WakeSignal wake = new();
    private bool draining;   // a thread (the loop or the reader) is writing; it empties the queue before it stops
    private bool loopParked; // the loop waits for wake
    private bool completed;  // no more PDUs are taken
    private bool handedOver; // the reader's last send did not complete at once: the loop finishes it, then drains
    private ValueTask handedOverSend;
    private int backlog;
    private Task? loop;
    // The reader waits for room in the queue (WaitForRoomAsync); created only then, completed where the backlog drops.
    private TaskCompletionSource? room;
    private int roomAt;

    public PduSender(Socket socket, IscsiConnection connection, uint initialStatSN)
    {
        this.connection = connection;
        encoder = new PduEncoder(socket, connection.Parameters, initialStatSN);
    }

    /// <summary>Items queued but not yet written.</summary>
    public int Backlog => Volatile.Read(ref backlog);

    public void Start() => loop = Task.Run(RunAsync);

    /// <summary>Stops taking work and waits for the writer to finish what is queued.</summary>
    public async Task StopAsync()
    {
        bool signal;
        TaskCompletionSource? waiter;
        lock (gate)
        {
            completed = true;
            signal = loopParked;
            loopParked = false;
            waiter = TakeRoomWaiter();
        }
        waiter?.TrySetResult();
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

    /// <summary>
    /// Completes when at most <paramref name="limit"/> items are queued, or when the sender
    /// stops or the connection closes (the reader then finds it closed). One waiter: the reader.
    /// </summary>
    public Task WaitForRoomAsync(int limit)
    {
        lock (gate)
        {
            if (backlog <= limit || completed || connection.IsClosed)
                return Task.CompletedTask;
            roomAt = limit;
            room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return room.Task;
        }
    }

    /// <summary>The connection closed: a reader waiting for room must not wait for a writer that may never write again.</summary>
    public void ConnectionClosed()
    {
        TaskCompletionSource? waiter;
        lock (gate)
            waiter = TakeRoomWaiter();
        waiter?.TrySetResult();
    }

    private TaskCompletionSource? TakeRoomWaiter()
    {
        var waiter = room;
        room = null;
        return waiter;
    }

    public bool EnqueueResponse(IscsiCommand cmd) => Enqueue(new Outbound(OutboundKind.Response, cmd, null, default));

    public bool EnqueueR2T(in R2TRequest r2t) => Enqueue(new Outbound(OutboundKind.R2T, null, null, r2t));

    public bool Enqueue(ControlPdu pdu)
    {
        if (Enqueue(new Outbound(OutboundKind.Control, null, pdu, default)))
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
                TaskCompletionSource? roomMade = null;
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
                        if (room is not null && backlog <= roomAt)
                            roomMade = TakeRoomWaiter();
                    }
                }
                roomMade?.TrySetResult();
                if (item.Kind == OutboundKind.None || handOver)
                {
                    var send = encoder.FlushAsync();
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
                        try
                        {
                            await encoder.WriteResponseAsync(item.Command!);
                        }
                        finally
                        {
                            item.Command!.Session.Recycle(item.Command); // on the wire, or lost with the connection
                        }
                        break;
                    case OutboundKind.R2T:
                        await encoder.WriteR2TAsync(item.R2T, connection.Session!.Window());
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

    /// <summary>A control PDU, then what it asks to happen once it is on the wire; false when it closed the connection.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> WriteControlAsync(ControlPdu pdu)
    {
        try
        {
            await encoder.WriteControlAsync(pdu, pdu.FillWindow ? connection.Session?.Window() : null);
        }
        finally
        {
            pdu.Data?.Dispose();
            pdu.Data = null;
        }
        if (pdu.CloseAfter || pdu.AfterSend is not null)
            await encoder.FlushAsync();
        pdu.AfterSend?.Invoke();
        if (pdu.CloseAfter)
        {
            connection.Close("logged out");
            return false;
        }
        return true;
    }

    // The connection is over: nothing more is written; the loop ends and drops what is queued.
    private void Stop()
    {
        bool signal;
        TaskCompletionSource? waiter;
        lock (gate)
        {
            completed = true;
            draining = false;
            signal = loopParked;
            loopParked = false;
            waiter = TakeRoomWaiter();
        }
        waiter?.TrySetResult();
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
                cmd.Session.Recycle(cmd); // a queued response: the command already left the session's window
            item.Pdu?.Data?.Dispose();
        }
    }

    public void Dispose() => encoder.Dispose();

    private enum OutboundKind : byte { None, Response, R2T, Control }

    private readonly record struct Outbound(OutboundKind Kind, IscsiCommand? Command, ControlPdu? Pdu, R2TRequest R2T);
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
