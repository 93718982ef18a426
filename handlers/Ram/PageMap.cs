namespace HandlerRuntime.Handlers.Ram;

/// <summary>
/// Which pages of a mapping hold written data, one bit per page: set by writes, cleared
/// when UNMAP deallocates whole pages. It answers GET LBA STATUS exactly, where
/// mincore() could not (a swapped-out page is not resident yet still holds data).
/// Safe for concurrent use: bits change with interlocked operations.
/// </summary>
internal sealed class PageMap(long bytes, int pageSize)
{
    private long[] bits = new long[Words(bytes, pageSize)];

    private static long Words(long bytes, int pageSize) => ((bytes + pageSize - 1) / pageSize + 63) / 64;

    public void MarkWritten(long offset, long count) => Update(offset / pageSize, (offset + count + pageSize - 1) / pageSize, set: true);

    /// <summary>Marks deallocated the pages wholly inside the range.</summary>
    public void MarkDeallocated(long offset, long count) => Update((offset + pageSize - 1) / pageSize, (offset + count) / pageSize, set: false);

    public void SetAll(bool written) => Array.Fill(bits, written ? -1L : 0L);

    public void Resize(long newBytes)
    {
        var grown = new long[Words(newBytes, pageSize)];
        Array.Copy(bits, grown, Math.Min(bits.Length, grown.Length));
        bits = grown;
    }

    private bool IsWritten(long page) => (Volatile.Read(ref bits[page >> 6]) & (1L << (int)(page & 63))) != 0;

    /// <summary>Whether the byte at <paramref name="offset"/> is in a written page, and how many bytes from there share that state (at most <paramref name="max"/>).</summary>
    public (bool Written, long Length) Extent(long offset, long max)
    {
        var page = offset / pageSize;
        var state = IsWritten(page);
        var lastPage = (offset + max - 1) / pageSize;
        var next = page + 1;
        // A word at a time: the first page after this one whose bit differs from its state.
        var flip = state ? -1L : 0L;
        while (next <= lastPage)
        {
            var word = (int)(next >> 6);
            var shift = (int)(next & 63);
            var differing = (Volatile.Read(ref bits[word]) ^ flip) >> shift;
            if (shift > 0)
                differing &= (1L << (64 - shift)) - 1; // the arithmetic shift dragged the sign in
            if (differing != 0)
            {
                next += System.Numerics.BitOperations.TrailingZeroCount(differing);
                break;
            }
            next += 64 - shift;
        }
        next = Math.Min(next, lastPage + 1);
        return (state, Math.Min(max, next * pageSize - offset));
    }

    private void Update(long first, long end, bool set)
    {
        for (var page = first; page < end;)
        {
            var word = (int)(page >> 6);
            var from = (int)(page & 63);
            var to = (int)Math.Min(64, from + (end - page));
            var mask = to == 64 ? -1L << from : ((1L << to) - 1) & (-1L << from);
            // Rewriting written pages is the common case: leave the word (and its cache line) alone then.
            var now = Volatile.Read(ref bits[word]);
            if (set && (now & mask) != mask)
                Interlocked.Or(ref bits[word], mask);
            else if (!set && (now & mask) != 0)
                Interlocked.And(ref bits[word], ~mask);
            page += to - from;
        }
    }
}
