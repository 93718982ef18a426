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

    /// <summary>
    /// A rented buffer. Dispose returns it; using it afterwards is a bug. A buffer made by
    /// <see cref="CreateLoan"/> instead lends memory that belongs to someone else (a TCMU data
    /// area mapped from the kernel), so that the core reads and writes it in place; it has no
    /// <see cref="Array"/>, and Dispose only ends the loan.
    /// </summary>
    public sealed class PooledBuffer : System.Buffers.IMemoryOwner<byte>
    {
        private readonly SizeClass? owner;
        private readonly byte[]? array;
        private Memory<byte> lent;

        internal PooledBuffer(SizeClass? owner, byte[] array)
        {
            this.owner = owner;
            this.array = array;
        }

        private PooledBuffer() { }

        /// <summary>A reusable loan: <see cref="Lend"/> points it at memory for one use, Dispose ends that use.</summary>
        public static PooledBuffer CreateLoan() => new();

        /// <summary>Lends <paramref name="memory"/> (whole) until the next Dispose.</summary>
        public void Lend(Memory<byte> memory)
        {
            if (array is not null)
                throw new InvalidOperationException("Only a loan made by CreateLoan can lend memory.");
            if (Rented)
                throw new InvalidOperationException("A loan was lent again before it was returned.");
            lent = memory;
            Length = memory.Length;
            Rented = true;
        }

        /// <summary>Whether this buffer lends memory owned elsewhere.</summary>
        public bool IsLoan => array is null;

        /// <summary>The whole pinned array (may be longer than <see cref="Length"/>); a loan has none.</summary>
        public byte[] Array => array ?? throw new InvalidOperationException("A lent buffer has no array; use Memory or Span.");

        /// <summary>How many bytes the buffer can hold.</summary>
        public int Capacity => array?.Length ?? lent.Length;

        /// <summary>The length asked for.</summary>
        public int Length { get; set; }

        internal bool Rented { get; set; }

        /// <summary>The first <see cref="Length"/> bytes.</summary>
        public Memory<byte> Memory => array is not null ? new(array, 0, Length) : lent[..Length];

        /// <summary>The first <see cref="Length"/> bytes.</summary>
        public Span<byte> Span => array is not null ? new(array, 0, Length) : lent.Span[..Length];

        /// <summary>Returns the buffer to its pool (a loan: ends the loan; the memory is not touched).</summary>
        public void Dispose()
        {
            if (!Rented)
                throw new InvalidOperationException("A pooled buffer was returned twice.");
            Rented = false;
            if (array is null)
                lent = default;
            else
                owner?.Return(this);
        }
    }
}
