using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.Rbd.Native;

/// <summary>
/// A rados_t. Shut down when the last user lets go: every I/O context made from it holds a
/// reference, so the connection outlives the images that use it.
/// </summary>
internal sealed class ClusterHandle : SafeHandle
{
    public ClusterHandle() : base(0, ownsHandle: true) { }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        Librados.rados_shutdown(handle);
        return true;
    }
}

/// <summary>A rados_ioctx_t (one pool of one connection), holding a reference on its connection.</summary>
internal sealed class IoContextHandle : SafeHandle
{
    private ClusterHandle? cluster;

    public IoContextHandle() : base(0, ownsHandle: true) { }

    public override bool IsInvalid => handle == 0;

    /// <summary>Keeps <paramref name="owner"/> open for as long as this context is.</summary>
    public void Hold(ClusterHandle owner)
    {
        var added = false;
        owner.DangerousAddRef(ref added);
        cluster = owner;
    }

    protected override bool ReleaseHandle()
    {
        Librados.rados_ioctx_destroy(handle);
        cluster?.DangerousRelease();
        return true;
    }
}

/// <summary>
/// An rbd_image_t, holding a reference on its I/O context. Each asynchronous operation holds a
/// reference from submission to completion, so a disposed image is closed only once its last
/// operation has completed. rbd_close waits for the cluster, and when that last completion runs on
/// a librbd callback thread the close is handed to the pool: closing there could wait for itself.
/// </summary>
internal sealed class ImageHandle : SafeHandle
{
    [ThreadStatic]
    private static bool onCallbackThread;

    private IoContextHandle? ioContext;

    public ImageHandle() : base(0, ownsHandle: true) { }

    public override bool IsInvalid => handle == 0;

    /// <summary>Marks the current thread as running a librbd callback (set by the completion callbacks).</summary>
    public static bool OnCallbackThread
    {
        get => onCallbackThread;
        set => onCallbackThread = value;
    }

    public void Hold(IoContextHandle owner)
    {
        var added = false;
        owner.DangerousAddRef(ref added);
        ioContext = owner;
    }

    protected override bool ReleaseHandle()
    {
        var image = handle;
        var context = ioContext;
        if (onCallbackThread)
            ThreadPool.UnsafeQueueUserWorkItem(_ => Close(image, context), null);
        else
            Close(image, context);
        return true;
    }

    private static void Close(nint image, IoContextHandle? context)
    {
        Librbd.rbd_close(image);
        context?.DangerousRelease();
    }
}
