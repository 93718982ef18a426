using System.Net.Sockets;
using System.Runtime.CompilerServices;
using HandlerRuntime.Buffers;

namespace HandlerRuntime.Fabrics.Iscsi.Connections;

/// <summary>
/// Reads a TCP stream in exact amounts through one pinned, pooled buffer, so small PDUs
/// cost one receive call for many, while large data segments land straight in their
/// destination (the command's pooled write buffer) without an extra copy.
/// </summary>
internal sealed class SocketReceiver(Socket socket) : IDisposable
{
    private const int BufferSize = 64 * 1024;
    private readonly BufferPool.PooledBuffer buffer = BufferPool.Shared.Rent(BufferSize);
    private int start, end;
    private bool disposed;

    /// <summary>Runs before every receive call that may wait for the peer (the connection writes its pending responses there).</summary>
    public Func<ValueTask>? BeforeWait { get; set; }

    /// <summary>Fills <paramref name="destination"/> completely; throws <see cref="EndOfStreamException"/> when the peer closes.</summary>
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
            if (want >= BufferSize / 2)
            {
                // Large remainder: receive directly into the destination.
                if (BeforeWait is { } beforeLarge)
                    await beforeLarge();
                var n = await socket.ReceiveAsync(destination[done..], SocketFlags.None, ct);
                if (n == 0)
                    throw new EndOfStreamException();
                done += n;
            }
            else
            {
                if (BeforeWait is { } before)
                    await before();
                var n = await socket.ReceiveAsync(buffer.Array.AsMemory(0, BufferSize), SocketFlags.None, ct);
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

    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        buffer.Dispose();
    }
}
