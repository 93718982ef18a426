using System.Runtime.CompilerServices;
using HandlerRuntime.Buffers;

namespace HandlerRuntime.Fabrics.Nbd;

/// <summary>
/// Reads an NBD connection's stream (TCP, or TLS after STARTTLS) in exact amounts. In
/// transmission it reads ahead through one pinned, pooled buffer, so a batch of small requests
/// costs one receive call, while large WRITE payloads land straight in their pooled buffer.
/// During negotiation it never reads past what was asked: after STARTTLS the next bytes are
/// the client's TLS hello, which belong to the TLS layer, not to this buffer.
/// </summary>
internal sealed class NbdReceiver(Stream stream) : IDisposable
{
    private const int BufferSize = 64 * 1024;
    private readonly BufferPool.PooledBuffer buffer = BufferPool.Shared.Rent(BufferSize);
    private int start, end;
    private bool disposed;

    /// <summary>The stream read from; replaced by the TLS stream after STARTTLS (nothing may be buffered then).</summary>
    public Stream Stream
    {
        get => stream;
        set
        {
            if (end != start)
                throw new InvalidOperationException("bytes read ahead would be lost to the TLS layer");
            stream = value;
        }
    }

    /// <summary>Read ahead into the buffer (transmission) or only what is asked (negotiation).</summary>
    public bool ReadAhead { get; set; }

    /// <summary>Runs before every receive that may wait for the client (the connection sends its queued replies there).</summary>
    public Func<ValueTask>? BeforeWait { get; set; }

    /// <summary>Fills <paramref name="destination"/> completely; throws <see cref="EndOfStreamException"/> when the client closes.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask ReadExactAsync(Memory<byte> destination, CancellationToken ct)
    {
        var buffered = end - start;
        if (buffered >= destination.Length)
        {
            buffer.Array.AsSpan(start, destination.Length).CopyTo(destination.Span);
            start += destination.Length;
            return;
        }
        buffer.Array.AsSpan(start, buffered).CopyTo(destination.Span);
        start = end = 0;
        var done = buffered;
        while (done < destination.Length)
        {
            var want = destination.Length - done;
            if (BeforeWait is { } before)
                await before();
            if (!ReadAhead || want >= BufferSize / 2)
            {
                // Negotiation, or a large remainder: receive straight into the destination.
                var n = await stream.ReadAsync(destination[done..], ct);
                if (n == 0)
                    throw new EndOfStreamException();
                done += n;
            }
            else
            {
                var n = await stream.ReadAsync(buffer.Array.AsMemory(0, BufferSize), ct);
                if (n == 0)
                    throw new EndOfStreamException();
                var take = Math.Min(n, want);
                buffer.Array.AsSpan(0, take).CopyTo(destination.Span[done..]);
                done += take;
                start = take;
                end = n;
            }
        }
    }

    /// <summary>Reads and drops <paramref name="count"/> bytes (the payload of a refused WRITE, the data of an unknown option).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SkipAsync(long count, CancellationToken ct)
    {
        var buffered = Math.Min(end - start, count);
        start += (int)buffered;
        count -= buffered;
        while (count > 0)
        {
            if (BeforeWait is { } before)
                await before();
            var n = await stream.ReadAsync(buffer.Array.AsMemory(0, (int)Math.Min(count, BufferSize)), ct);
            if (n == 0)
                throw new EndOfStreamException();
            count -= n;
        }
        start = end = 0;
    }

    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        buffer.Dispose();
    }
}
