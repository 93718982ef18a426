using System.Runtime.CompilerServices;
using HandlerRuntime.Buffers;
using HandlerRuntime.Fabrics.Iscsi.Connections;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Fabrics.Nbd;

/// <summary>
/// The one writer of an NBD connection in transmission: replies leave in whatever order their
/// requests complete, never interleaved mid-message (proto.md: "replies must not interleave"),
/// headers and small data gathered in one pinned buffer, large READ data sent from the
/// request's own pooled buffer.
/// <para>
/// Who writes (as the iSCSI sender, PduSender): replies that complete on the connection's
/// reader while it works through a received batch (ram, page-cache hits) stay queued, and the
/// reader sends them in one call before it next waits for input; a reply that completes on
/// another thread (disk I/O) is written by that thread when no one else is writing, or
/// deferred to the handler's <see cref="CompletionBatch"/>. Large READ data, and a send the
/// client is not ready to take, go to the writer loop, so neither the reader nor a handler's
/// thread ever waits for the client.
/// </para>
/// </summary>
internal sealed class NbdReplySender : IDeferredSend, IDisposable
{
    private const int BufferSize = 256 * 1024;
    /// <summary>READ data larger than this is left to the writer loop: the reader must not wait for a slow client.</summary>
    private const int ReaderWritesDataUpTo = 64 * 1024;

    [ThreadStatic]
    private static NbdReplySender? readerOnThisThread;

    private readonly Stream stream;
    private readonly NbdConnection connection;
    private readonly bool structured;
    private readonly object gate = new();
    private readonly Queue<NbdRequest> pending = new();
    private readonly WakeSignal wake = new();
    private readonly BufferPool.PooledBuffer buffer = BufferPool.Shared.Rent(BufferSize);
    private bool draining;   // a thread is writing; it empties the queue before it stops
    private bool loopParked; // the loop waits for wake
    private bool completed;  // no more replies are taken
    private bool handedOver; // a drainer's send did not complete at once: the loop finishes it, then drains
    private ValueTask handedOverSend;
    private int used;
    private Task? loop;

    public NbdReplySender(Stream stream, NbdConnection connection, bool structuredReplies)
    {
        this.stream = stream;
        this.connection = connection;
        structured = structuredReplies;
    }

    public void Start() => loop = Task.Run(RunAsync);

    /// <summary>Stops taking replies and waits for the writer to finish what is queued.</summary>
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
    }

    /// <summary>
    /// Marks this thread as the connection's reader until the scope ends: replies completed
    /// meanwhile are queued, and the reader sends them with <see cref="FlushBatchAsync"/>
    /// before it waits for anything. Only around code that runs synchronously.
    /// </summary>
    public ReaderScope EnterReader()
    {
        var previous = readerOnThisThread;
        readerOnThisThread = this;
        return new ReaderScope(previous);
    }

    public readonly struct ReaderScope(NbdReplySender? previous) : IDisposable
    {
        public void Dispose() => readerOnThisThread = previous;
    }

    /// <summary>The reader is about to wait: what it left queued goes out now, unless a writer is at work (it takes it along).</summary>
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

    /// <summary>Queues a finished request's reply; false when the connection no longer sends (recycle it then).</summary>
    public bool Enqueue(NbdRequest request)
    {
        lock (gate)
        {
            if (completed)
                return false;
            pending.Enqueue(request);
            // Someone writes it: the thread draining now, the loop that is awake, or the reader before it waits.
            if (draining || !loopParked || ReferenceEquals(readerOnThisThread, this))
                return true;
            draining = true; // completed on another thread: that thread writes it
        }
        // Waking the loop would cost a thread switch per reply, more than the send itself.
        // Inside a handler's completion batch the batch's end sends, once for all it completed.
        if (!CompletionBatch.TryDefer(this))
            DrainHere();
        return true;
    }

    void IDeferredSend.Send() => DrainHere();

    /// <summary>Writes the queue on this thread (draining is set); a send that cannot finish at once is handed to the loop.</summary>
    private void DrainHere()
    {
        var drain = DrainAsync(byReader: true);
        if (drain.IsCompleted)
            drain.GetAwaiter().GetResult();
        else
            _ = drain.AsTask(); // rare (buffer full mid-reply); DrainAsync handles its own failures
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
                    handedOver = false; // draining stays set: it is the loop's now
                    unfinished = handedOverSend;
                    handedOverSend = default;
                    takeOver = true;
                    park = false;
                }
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
        DropQueued();
    }

    private async ValueTask<bool> FinishSendAsync(ValueTask send)
    {
        try
        {
            await send;
            return true;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException or System.Net.Sockets.SocketException)
        {
            connection.Close("send failed: " + e.Message);
            Stop();
            return false;
        }
    }

    /// <summary>Writes queued replies until none is left; the caller has set <see cref="draining"/>.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask DrainAsync(bool byReader)
    {
        try
        {
            while (true)
            {
                NbdRequest? item;
                var handOver = false;
                lock (gate)
                {
                    if (!pending.TryPeek(out item))
                        item = null;
                    else if (byReader && LeftToLoop(item))
                        handOver = true; // the loop writes it; this thread goes back to its work
                    else
                        pending.Dequeue();
                }
                if (item is null || handOver)
                {
                    var send = FlushAsync();
                    if (byReader && !send.IsCompleted)
                    {
                        // The client is not taking data now: the loop finishes this send and the
                        // drain, this thread goes back (it never waits for the client).
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
                        // Wake the parked loop for what is left, or to end if the sender was stopped meanwhile.
                        signal = (pending.Count > 0 || completed) && loopParked;
                        if (signal)
                            loopParked = false;
                    }
                    if (signal)
                        wake.Set();
                    return;
                }
                await WriteReplyAsync(item);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException or System.Net.Sockets.SocketException)
        {
            connection.Close("send failed: " + e.Message);
            Stop();
        }
        catch (Exception e)
        {
            connection.Log.Error(e, "NBD {Remote}: the reply sender failed", connection.RemoteText);
            connection.Close("sender failed");
            Stop();
        }
    }

    private static bool LeftToLoop(NbdRequest r) => r.Command == NbdCommand.Read && r.Error == 0 && r.Length > ReaderWritesDataUpTo;

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

    // The connection is over: replies still queued are dropped and their requests recycled.
    private void DropQueued()
    {
        while (true)
        {
            NbdRequest? r;
            lock (gate)
            {
                if (!pending.TryDequeue(out r))
                    return;
            }
            connection.Recycle(r);
        }
    }

    // ---- framing ----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask EnsureSpaceAsync(int bytes)
    {
        if (BufferSize - used < bytes)
            await FlushAsync();
    }

    private ValueTask FlushAsync()
    {
        if (used == 0)
            return default;
        var n = used;
        used = 0;
        return stream.WriteAsync(buffer.Array.AsMemory(0, n));
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteDataAsync(ReadOnlyMemory<byte> data)
    {
        if (data.Length <= BufferSize - used || data.Length <= BufferSize / 4)
        {
            await EnsureSpaceAsync(data.Length);
            data.Span.CopyTo(buffer.Array.AsSpan(used));
            used += data.Length;
            return;
        }
        // Large data: what is gathered first, then the data from where it lies.
        await FlushAsync();
        await stream.WriteAsync(data);
    }

    private void SimpleReply(uint error, ulong cookie)
    {
        var h = buffer.Array.AsSpan(used, NbdProtocol.SimpleReplyLength);
        NbdProtocol.Put32(h, 0, NbdProtocol.SimpleReplyMagic);
        NbdProtocol.Put32(h, NbdProtocol.SimpleReplyErrorAt, error);
        NbdProtocol.Put64(h, NbdProtocol.SimpleReplyCookieAt, cookie);
        used += NbdProtocol.SimpleReplyLength;
    }

    private Span<byte> Chunk(NbdChunk type, bool done, ulong cookie, int payloadLength)
    {
        var h = buffer.Array.AsSpan(used, NbdProtocol.ChunkHeaderLength);
        NbdProtocol.Put32(h, 0, NbdProtocol.StructuredReplyMagic);
        NbdProtocol.Put16(h, NbdProtocol.ChunkFlagsAt, done ? NbdProtocol.ReplyFlagDone : (ushort)0);
        NbdProtocol.Put16(h, NbdProtocol.ChunkTypeAt, (ushort)type);
        NbdProtocol.Put64(h, NbdProtocol.ChunkCookieAt, cookie);
        NbdProtocol.Put32(h, NbdProtocol.ChunkLengthAt, (uint)payloadLength);
        used += NbdProtocol.ChunkHeaderLength;
        return buffer.Array.AsSpan(used);
    }

    /// <summary>
    /// A simple reply for everything but READ and BLOCK_STATUS under structured replies (as
    /// nbdkit does); those get one chunk flagged DONE (OFFSET_DATA, BLOCK_STATUS or ERROR), or
    /// a large READ its data and hole runs, the last one flagged DONE.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteReplyAsync(NbdRequest r)
    {
        try
        {
            const int headerRoom = NbdProtocol.ChunkHeaderLength + NbdProtocol.OffsetHoleLength;
            await EnsureSpaceAsync(headerRoom);
            if (!structured || r.Command is not (NbdCommand.Read or NbdCommand.BlockStatus))
            {
                SimpleReply(r.Error, r.Cookie);
                if (r.Command == NbdCommand.Read && r.Error == 0)
                    await WriteDataAsync(r.Task.DataInBuffer!.Memory[..(int)r.Length]);
                return;
            }
            if (r.Error != 0)
            {
                var p = Chunk(NbdChunk.Error, done: true, r.Cookie, NbdProtocol.ErrorChunkLength);
                NbdProtocol.Put32(p, 0, r.Error);
                NbdProtocol.Put16(p, 4, 0); // no message: nothing to allocate, and the errno says it
                used += NbdProtocol.ErrorChunkLength;
                return;
            }
            if (r.Command == NbdCommand.BlockStatus)
            {
                var bytes = NbdProtocol.ExtentLength * r.ExtentCount;
                var p = Chunk(NbdChunk.BlockStatus, done: true, r.Cookie, NbdProtocol.BlockStatusPrefix + bytes);
                NbdProtocol.Put32(p, 0, NbdMetaContext.BaseAllocationId);
                used += NbdProtocol.BlockStatusPrefix;
                await WriteDataAsync(r.Extents!.Memory.Slice(NbdProtocol.BlockStatusPrefix, bytes));
                return;
            }
            var data = r.Task.DataInBuffer!.Memory[..(int)r.Length];
            if (r.RunCount == 0)
            {
                var p = Chunk(NbdChunk.OffsetData, done: true, r.Cookie, NbdProtocol.OffsetDataPrefix + data.Length);
                NbdProtocol.Put64(p, 0, r.Offset);
                used += NbdProtocol.OffsetDataPrefix;
                await WriteDataAsync(data);
                return;
            }
            for (var i = 0; i < r.RunCount; i++)
            {
                var (start, length) = r.Runs[i];
                var last = i == r.RunCount - 1;
                await EnsureSpaceAsync(headerRoom);
                if (length < 0)
                {
                    var p = Chunk(NbdChunk.OffsetHole, last, r.Cookie, NbdProtocol.OffsetHoleLength);
                    NbdProtocol.Put64(p, 0, r.Offset + (ulong)start);
                    NbdProtocol.Put32(p, 8, (uint)-length);
                    used += NbdProtocol.OffsetHoleLength;
                }
                else
                {
                    var p = Chunk(NbdChunk.OffsetData, last, r.Cookie, NbdProtocol.OffsetDataPrefix + length);
                    NbdProtocol.Put64(p, 0, r.Offset + (ulong)start);
                    used += NbdProtocol.OffsetDataPrefix;
                    await WriteDataAsync(data.Slice(start, length));
                }
            }
        }
        finally
        {
            connection.Recycle(r);
        }
    }

    public void Dispose() => buffer.Dispose();
}
