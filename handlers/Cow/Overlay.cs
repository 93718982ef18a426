namespace HandlerRuntime.Handlers.Cow;

/// <summary>
/// Where a cow/ device keeps what was written over its base, a chunk (the granularity) at a
/// time, with each chunk's state: still the base's, in the overlay, or zeroed. States are read
/// without a lock (a chunk's data is stored before its state says so); every change happens
/// under the device's mutation lock.
/// </summary>
internal abstract class Overlay : IAsyncDisposable
{
    /// <summary>Chunk states.</summary>
    public const byte Base = 0, Data = 1, Zero = 2;

    /// <summary>At most this many chunks (a map entry holds a 30-bit slot number).</summary>
    public const long MaxChunks = (1 << 30) - 1;

    private readonly byte[] states;

    protected Overlay(long sizeBytes, int chunkBytes)
    {
        SizeBytes = sizeBytes;
        ChunkBytes = chunkBytes;
        Chunks = (sizeBytes + chunkBytes - 1) / chunkBytes;
        if (Chunks > MaxChunks)
            throw new InvalidDataException($"cow: a {sizeBytes}-byte device in {chunkBytes}-byte blocks needs {Chunks} map entries, more than {MaxChunks}; give a larger granularity.");
        states = new byte[Chunks];
    }

    public long SizeBytes { get; }
    public int ChunkBytes { get; }
    public long Chunks { get; }

    /// <summary>True when the overlay survives a close (a file).</summary>
    public abstract bool Persistent { get; }

    /// <summary>Where it is, for status and logs.</summary>
    public abstract string Where { get; }

    /// <summary>The map changed since it was last made durable.</summary>
    protected bool Dirty { get; set; }

    /// <summary>Bytes of chunk <paramref name="chunk"/> (the last one may be short).</summary>
    public int ChunkLength(long chunk) => (int)Math.Min(ChunkBytes, SizeBytes - chunk * ChunkBytes);

    public byte StateOf(long chunk) => Volatile.Read(ref states[chunk]);

    public void SetState(long chunk, byte state)
    {
        if (states[chunk] == state)
            return;
        Volatile.Write(ref states[chunk], state);
        Dirty = true;
    }

    public long ChunksInOverlay => states.LongCount(s => s != Base);

    public long ChunksZeroed => states.LongCount(s => s == Zero);

    /// <summary>For a map loaded from disk.</summary>
    protected void LoadState(long chunk, byte state) => states[chunk] = state;

    /// <summary>Reads part of a chunk whose state is <see cref="Data"/>.</summary>
    public abstract ValueTask ReadAsync(long chunk, int at, Memory<byte> destination, CancellationToken ct);

    /// <summary>Writes part of a chunk into the overlay, giving it storage first when it has none (its state is the caller's to set).</summary>
    public abstract ValueTask WriteAsync(long chunk, int at, ReadOnlyMemory<byte> source, CancellationToken ct);

    /// <summary>Makes the overlay's data and map durable.</summary>
    public abstract ValueTask FlushAsync(CancellationToken ct);

    public abstract ValueTask DisposeAsync();
}

/// <summary>An overlay in memory: one array per chunk that was ever written, dropped with the device.</summary>
internal sealed class MemoryOverlay : Overlay
{
    private readonly byte[]?[] chunks;
    private long allocated;

    public MemoryOverlay(long sizeBytes, int chunkBytes) : base(sizeBytes, chunkBytes) => chunks = new byte[]?[Chunks];

    public override bool Persistent => false;

    public override string Where => "memory";

    public long AllocatedBytes => Volatile.Read(ref allocated);

    public override ValueTask ReadAsync(long chunk, int at, Memory<byte> destination, CancellationToken ct)
    {
        Volatile.Read(ref chunks[chunk])!.AsSpan(at, destination.Length).CopyTo(destination.Span);
        return default;
    }

    public override ValueTask WriteAsync(long chunk, int at, ReadOnlyMemory<byte> source, CancellationToken ct)
    {
        var data = chunks[chunk];
        if (data is null)
        {
            data = new byte[ChunkLength(chunk)];
            source.Span.CopyTo(data.AsSpan(at));
            Volatile.Write(ref chunks[chunk], data); // published whole
            Interlocked.Add(ref allocated, data.Length);
        }
        else
        {
            source.Span.CopyTo(data.AsSpan(at));
        }
        return default;
    }

    public override ValueTask FlushAsync(CancellationToken ct) => default;

    public override ValueTask DisposeAsync() => default;
}
