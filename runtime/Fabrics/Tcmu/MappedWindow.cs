using System.Buffers;

namespace HandlerRuntime.Fabrics.Tcmu;

/// <summary>
/// A <see cref="Memory{T}"/> over a run of the TCMU data area, so a command's data-out and
/// data-in are read and written in place by the core and the handler. One window per pooled
/// command, pointed at the command's run for its life: the data area's pages belong to the
/// command only until it is completed (the kernel may unmap idle pages, and touching one then
/// raises SIGBUS), so nothing may keep the memory after completion, the same contract as a
/// pooled buffer. The mapping never moves, so pinning is free.
/// </summary>
internal sealed unsafe class MappedWindow : MemoryManager<byte>
{
    private byte* start;
    private int length;

    /// <summary>Points the window at <paramref name="length"/> bytes at <paramref name="pointer"/> and returns its memory.</summary>
    public Memory<byte> Set(byte* pointer, int length)
    {
        start = pointer;
        this.length = length;
        return Memory;
    }

    public void Clear()
    {
        start = null;
        length = 0;
    }

    public override Span<byte> GetSpan() => new(start, length);

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)elementIndex, (uint)length);
        return new MemoryHandle(start + elementIndex);
    }

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing) => Clear();
}
