namespace HandlerRuntime.Buffers;

/// <summary>
/// Pinned, pooled byte buffers in power-of-two size classes, so that socket and file
/// I/O never pins per call and the steady state allocates nothing. Buffers above the
/// largest class are allocated and dropped. Retention per class is bounded so that a
/// burst of large transfers cannot hold memory forever.
/// </summary>
public sealed class BufferPool
{
    private const int MinShift = 9;   // 512 B
    private const int MaxShift = 24;  // 16 MiB
    private readonly SizeClass[] classes;

    /// <summary>The process-wide pool.</summary>
    public static BufferPool Shared { get; } = new(retainedBytesPerClass: 64L << 20);

    public BufferPool(long retainedBytesPerClass)
    {
        classes = new SizeClass[MaxShift - MinShift + 1];
        for (var i = 0; i < classes.Length; i++)
        {
            var size = 1 << (MinShift + i);
            var keep = (int)Math.Clamp(retainedBytesPerClass / size, 4, 4096);
            classes[i] = new SizeClass(size, keep);
        }
    }

    /// <summary>Rents a buffer of at least <paramref name="minimumLength"/> bytes; its <see cref="PooledBuffer.Length"/> is set to that value.</summary>
    public PooledBuffer Rent(int minimumLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(minimumLength);
        var shift = Math.Max(MinShift, 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)Math.Max(1, minimumLength) - 1));
        PooledBuffer buffer;
        if (shift > MaxShift)
            buffer = new PooledBuffer(null, GC.AllocateUninitializedArray<byte>(minimumLength, pinned: true)) { Rented = true };
        else
            buffer = classes[shift - MinShift].Rent();
        buffer.Length = minimumLength;
        return buffer;
    }

    internal sealed class SizeClass(int size, int keep)
    {
        private readonly PooledBuffer[] stack = new PooledBuffer[keep];
        private int count;

        public PooledBuffer Rent()
        {
            lock (stack)
            {
                if (count > 0)
                {
                    var b = stack[--count];
                    stack[count] = null!;
                    b.Rented = true;
                    return b;
                }
            }
            return new PooledBuffer(this, GC.AllocateUninitializedArray<byte>(size, pinned: true)) { Rented = true };
        }

        public void Return(PooledBuffer buffer)
        {
            lock (stack)
            {
                if (count < stack.Length)
                    stack[count++] = buffer;
            }
        }
    }

    /// <summary>A rented buffer. Dispose returns it; using it afterwards is a bug.</summary>
    public sealed class PooledBuffer : System.Buffers.IMemoryOwner<byte>
    {
        private readonly SizeClass? owner;

        internal PooledBuffer(SizeClass? owner, byte[] array)
        {
            this.owner = owner;
            Array = array;
        }

        /// <summary>The whole pinned array (may be longer than <see cref="Length"/>).</summary>
        public byte[] Array { get; }

        /// <summary>The length asked for.</summary>
        public int Length { get; set; }

        internal bool Rented { get; set; }

        /// <summary>The first <see cref="Length"/> bytes.</summary>
        public Memory<byte> Memory => new(Array, 0, Length);

        /// <summary>The first <see cref="Length"/> bytes.</summary>
        public Span<byte> Span => new(Array, 0, Length);

        /// <summary>Returns the buffer to its pool.</summary>
        public void Dispose()
        {
            if (!Rented)
                throw new InvalidOperationException("A pooled buffer was returned twice.");
            Rented = false;
            owner?.Return(this);
        }
    }
}
