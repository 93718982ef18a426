using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using HandlerRuntime.Handlers.Rbd.Native;

namespace HandlerRuntime.Handlers.Rbd;

/// <summary>What one librbd operation returned: its return value and, for a compare-and-write that miscompared, where.</summary>
internal readonly record struct RbdResult(long Return, ulong MismatchOffset);

/// <summary>
/// One asynchronous librbd operation in flight, pooled per device: an rbd completion whose static
/// unmanaged callback completes this value-task source. Submitting pins the caller's buffers and
/// holds a reference on the image; completion lets both go, so a closed image is never touched and a
/// buffer never moves under librbd. Nothing here allocates per operation once the pool is warm, and
/// no thread waits: the awaiting code continues on the librbd thread that ran the callback.
/// </summary>
internal sealed unsafe class RbdOperation : IValueTaskSource<RbdResult>
{
    private readonly OperationPool pool;
    private readonly GCHandle self;
    private readonly ulong* mismatch;
    private ManualResetValueTaskSourceCore<RbdResult> core; // continuations run inline, on the callback thread
    private MemoryHandle pin;
    private ImageHandle? image;

    public RbdOperation(OperationPool pool)
    {
        this.pool = pool;
        self = GCHandle.Alloc(this, GCHandleType.Normal);
        mismatch = (ulong*)NativeMemory.Alloc(sizeof(ulong)); // librbd writes the miscompare offset here, after the call returned
    }

    /// <summary>Frees what the operation holds outside the managed heap; call once, when the pool is dropped.</summary>
    public void Free()
    {
        self.Free();
        NativeMemory.Free(mismatch);
    }

    public ValueTask<RbdResult> Read(ImageHandle image, long offset, Memory<byte> destination)
    {
        var buffer = Begin(image, destination);
        if (Completion() is not (var c and not 0))
            return NoCompletion();
        return Submitted(Librbd.rbd_aio_read(image.DangerousGetHandle(), (ulong)offset, (nuint)destination.Length, buffer, c), c);
    }

    public ValueTask<RbdResult> Write(ImageHandle image, long offset, ReadOnlyMemory<byte> source)
    {
        var buffer = Begin(image, MemoryMarshal.AsMemory(source));
        if (Completion() is not (var c and not 0))
            return NoCompletion();
        return Submitted(Librbd.rbd_aio_write(image.DangerousGetHandle(), (ulong)offset, (nuint)source.Length, buffer, c), c);
    }

    /// <summary>Compares <paramref name="compareThenWrite"/>'s first half with the image, and if equal writes its second half, atomically on the OSD.</summary>
    public ValueTask<RbdResult> CompareAndWrite(ImageHandle image, long offset, ReadOnlyMemory<byte> compareThenWrite)
    {
        var half = compareThenWrite.Length / 2;
        var buffer = Begin(image, MemoryMarshal.AsMemory(compareThenWrite));
        *mismatch = 0;
        if (Completion() is not (var c and not 0))
            return NoCompletion();
        return Submitted((int)Librbd.rbd_aio_compare_and_write(image.DangerousGetHandle(), (ulong)offset, (nuint)half, buffer, buffer + half, c, mismatch, 0), c);
    }

    public ValueTask<RbdResult> Flush(ImageHandle image)
    {
        Begin(image, default);
        if (Completion() is not (var c and not 0))
            return NoCompletion();
        return Submitted(Librbd.rbd_aio_flush(image.DangerousGetHandle(), c), c);
    }

    public ValueTask<RbdResult> Discard(ImageHandle image, long offset, long length)
    {
        Begin(image, default);
        if (Completion() is not (var c and not 0))
            return NoCompletion();
        return Submitted(Librbd.rbd_aio_discard(image.DangerousGetHandle(), (ulong)offset, (ulong)length, c), c);
    }

    public ValueTask<RbdResult> WriteZeroes(ImageHandle image, long offset, long length, bool keepAllocated)
    {
        Begin(image, default);
        if (Completion() is not (var c and not 0))
            return NoCompletion();
        return Submitted(Librbd.rbd_aio_write_zeroes(image.DangerousGetHandle(), (ulong)offset, (nuint)length, c,
            keepAllocated ? Librbd.WriteZeroesThickProvision : 0, 0), c);
    }

    private byte* Begin(ImageHandle image, Memory<byte> buffer)
    {
        var added = false;
        image.DangerousAddRef(ref added); // throws ObjectDisposedException once the image was closed
        this.image = image;
        pin = buffer.Pin();
        return (byte*)pin.Pointer;
    }

    private nint Completion()
        => Librbd.rbd_aio_create_completion(GCHandle.ToIntPtr(self), &OnComplete, out var c) < 0 ? 0 : c;

    private ValueTask<RbdResult> NoCompletion()
    {
        var token = core.Version;
        Finish(-Errno.ENOMEM); // nothing was queued
        return new ValueTask<RbdResult>(this, token);
    }

    /// <summary>
    /// The operation was handed to librbd (or refused). Its callback may already have run on another
    /// thread, so nothing of this object is read after a successful submission but the token.
    /// </summary>
    private ValueTask<RbdResult> Submitted(int submitted, nint c)
    {
        var token = core.Version;
        if (submitted < 0)
        {
            Librbd.rbd_aio_release(c); // refused at submission: the callback never runs
            Finish(submitted);
        }
        return new ValueTask<RbdResult>(this, token);
    }

    [UnmanagedCallersOnly]
    private static void OnComplete(nint completion, nint arg)
    {
        ImageHandle.OnCallbackThread = true;
        try
        {
            var op = (RbdOperation)GCHandle.FromIntPtr(arg).Target!;
            var r = (long)Librbd.rbd_aio_get_return_value(completion);
            Librbd.rbd_aio_release(completion);
            op.Finish(r);
        }
        finally
        {
            ImageHandle.OnCallbackThread = false;
        }
    }

    private void Finish(long r)
    {
        var result = new RbdResult(r, *mismatch);
        pin.Dispose();
        pin = default;
        var held = image;
        image = null;
        held?.DangerousRelease();
        core.SetResult(result);
    }

    RbdResult IValueTaskSource<RbdResult>.GetResult(short token)
    {
        var result = core.GetResult(token);
        core.Reset();
        pool.Return(this);
        return result;
    }

    ValueTaskSourceStatus IValueTaskSource<RbdResult>.GetStatus(short token) => core.GetStatus(token);

    void IValueTaskSource<RbdResult>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => core.OnCompleted(continuation, state, token, flags);
}

/// <summary>The operations of one device, reused: a stack under a lock (held for a push or a pop only).</summary>
internal sealed class OperationPool : IDisposable
{
    private readonly Stack<RbdOperation> free = new();
    private readonly List<RbdOperation> all = [];

    public RbdOperation Rent()
    {
        lock (free)
        {
            if (free.TryPop(out var op))
                return op;
            op = new RbdOperation(this);
            all.Add(op);
            return op;
        }
    }

    public void Return(RbdOperation op)
    {
        lock (free)
            free.Push(op);
    }

    /// <summary>Frees every operation; only when none is in flight (the device is closed).</summary>
    public void Dispose()
    {
        lock (free)
        {
            foreach (var op in all)
                op.Free();
            all.Clear();
            free.Clear();
        }
    }
}
