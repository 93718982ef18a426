using HandlerRuntime.Handlers.Zbc;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>
/// A simulated medium with a volatile cache, for power-cut trials. Reads see every write
/// (the page cache); the medium holds only what was synced: fdatasync makes written
/// sectors durable, fsync also punched holes. <see cref="CutPower"/> returns what the
/// medium could hold after a power cut at that instant: each sector changed since it was
/// last synced independently either old or new, as a page cache written back in any order
/// at sector granularity would leave it. With <see cref="CutAtOperation"/> set, the power
/// fails by itself just before that write, punch or sync, wherever in the device's code it is.
/// </summary>
internal sealed class PowerCutFile : IBackingFile
{
    private const int Sector = 512;
    private readonly Lock gate = new();
    private readonly HashSet<long> written = new();
    private readonly HashSet<long> punched = new();
    private byte[] medium;
    private byte[] cache;
    private Random? cutRandom;
    private long operations;
    private long cutAt = long.MaxValue;

    private PowerCutFile(byte[] image)
    {
        medium = image;
        cache = (byte[])image.Clone();
    }

    public static PowerCutFile Empty() => new([]);

    /// <summary>A medium found as a power cut left it.</summary>
    public static PowerCutFile FromImage(byte[] image) => new((byte[])image.Clone());

    /// <summary>The medium as the power cut left it, once it happened.</summary>
    public byte[]? Image { get; private set; }

    /// <summary>Cut the power just before the <paramref name="operation"/>-th write, punch or sync.</summary>
    public void CutAtOperation(long operation, Random random)
    {
        lock (gate)
        {
            cutAt = operation;
            cutRandom = random;
        }
    }

    /// <summary>Cut the power now, if it has not failed yet.</summary>
    public void CutNow(Random random)
    {
        lock (gate)
            Image ??= CutPowerLocked(random);
    }

    private void Tick()
    {
        if (++operations == cutAt && Image is null)
            Image = CutPowerLocked(cutRandom!);
    }

    public long Length
    {
        get { lock (gate) return cache.Length; }
    }

    public void SetLength(long length)
    {
        lock (gate)
        {
            Array.Resize(ref cache, (int)length);
            Array.Resize(ref medium, (int)length);
        }
    }

    public int Read(Span<byte> destination, long offset)
    {
        lock (gate)
        {
            var n = (int)Math.Clamp(cache.Length - offset, 0, destination.Length);
            cache.AsSpan((int)offset, n).CopyTo(destination);
            return n;
        }
    }

    public ValueTask<int> ReadAsync(Memory<byte> destination, long offset, CancellationToken ct) => ValueTask.FromResult(Read(destination.Span, offset));

    public void Write(ReadOnlySpan<byte> source, long offset)
    {
        lock (gate)
        {
            Tick();
            source.CopyTo(cache.AsSpan((int)offset));
            for (var s = offset / Sector; s <= (offset + source.Length - 1) / Sector; s++)
            {
                written.Add(s);
                punched.Remove(s);
            }
        }
    }

    public ValueTask WriteAsync(ReadOnlyMemory<byte> source, long offset, CancellationToken ct)
    {
        Write(source.Span, offset);
        return default;
    }

    public bool TryPunchHole(long offset, long length)
    {
        lock (gate)
        {
            Tick();
            cache.AsSpan((int)offset, (int)length).Clear();
            for (var s = offset / Sector; s <= (offset + length - 1) / Sector; s++)
            {
                punched.Add(s);
                written.Remove(s);
            }
        }
        return true;
    }

    public void SyncData()
    {
        lock (gate)
        {
            Tick();
            Persist(written);
            written.Clear();
        }
    }

    public void SyncAll()
    {
        lock (gate)
        {
            Tick();
            Persist(written);
            Persist(punched);
            written.Clear();
            punched.Clear();
        }
    }

    private void Persist(HashSet<long> sectors)
    {
        foreach (var s in sectors)
            cache.AsSpan((int)(s * Sector), Sector).CopyTo(medium.AsSpan((int)(s * Sector)));
    }

    private byte[] CutPowerLocked(Random random)
    {
        var image = (byte[])medium.Clone();
        foreach (var s in written.Concat(punched))
            if (random.Next(2) == 0)
                cache.AsSpan((int)(s * Sector), Sector).CopyTo(image.AsSpan((int)(s * Sector)));
        return image;
    }

    public void Dispose() { }
}
