using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using HandlerRuntime.Handlers.Rbd.Native;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Rbd;

/// <summary>
/// An open image on one cluster connection, with its update watch. A LUN replaces its session
/// when the cluster fenced the connection under it; operations still in flight on the old one
/// keep its image open until they complete (see <see cref="ImageHandle"/>).
/// </summary>
internal sealed unsafe class ImageSession : IDisposable
{
    private ulong watchHandle;
    private GCHandle watchTarget;

    private ImageSession(ClusterConnection connection, ImageHandle image, Librbd.ImageInfo info, ulong features)
    {
        Connection = connection;
        Image = image;
        ObjectSize = (long)info.ObjectSize;
        Features = features;
    }

    public ClusterConnection Connection { get; }
    public ImageHandle Image { get; }
    public long ObjectSize { get; }
    public ulong Features { get; }
    public bool HasExclusiveLock => (Features & Librbd.FeatureExclusiveLock) != 0;
    public bool Watching => watchTarget.IsAllocated;

    /// <summary>
    /// Opens <paramref name="config"/>'s image on <paramref name="connection"/> (blocking: call on a
    /// pool thread). A missing image is created with <paramref name="createSize"/> bytes when that is
    /// not 0, and refused with a sentence otherwise.
    /// </summary>
    public static ImageSession Open(ClusterConnection connection, RbdConfig config, bool readOnly, long createSize, Action<string> created)
    {
        var r = Librados.rados_ioctx_create(connection.Handle, config.Pool, out var ioContext);
        if (r < 0)
        {
            ioContext.Dispose();
            throw new RbdException(r, r == -Errno.ENOENT
                ? $"Pool '{config.Pool}' does not exist in cluster {connection.Fsid}; create it (ceph osd pool create {config.Pool}; rbd pool init {config.Pool}) or name another."
                : $"Could not open pool '{config.Pool}': {Errno.Describe(r)}.");
        }
        ioContext.Hold(connection.Handle);
        try
        {
            r = OpenImage(ioContext, config.Image, readOnly, out var image);
            if (r == -Errno.ENOENT)
            {
                if (createSize <= 0)
                    throw new RbdException(r, $"Image {config} does not exist; create it (rbd create --size 10G {config}) or give the LUN a size (--size) to have it created.");
                if (readOnly)
                    throw new RbdException(r, $"Image {config} does not exist, and a read-only LUN does not create one; create it with rbd create first.");
                var order = 0;
                r = Librbd.rbd_create(ioContext, config.Image, (ulong)createSize, ref order);
                if (r < 0 && r != -Errno.EEXIST) // EEXIST: another gateway created it meanwhile
                    throw new RbdException(r, $"Could not create image {config} of {createSize} bytes: {Errno.Describe(r)}.");
                if (r == 0)
                    created($"created image {config} of {createSize} bytes");
                r = OpenImage(ioContext, config.Image, readOnly, out image);
            }
            if (r < 0)
                throw new RbdException(r, $"Could not open image {config}: {Errno.Describe(r)}.");
            image.Hold(ioContext);
            Librbd.ImageInfo info;
            if ((r = Librbd.rbd_stat(image, &info, (nuint)sizeof(Librbd.ImageInfo))) < 0 || (r = Librbd.rbd_get_features(image, out var features)) < 0)
            {
                image.Dispose();
                throw new RbdException(r, $"Could not read image {config}'s size and features: {Errno.Describe(r)}.");
            }
            return new ImageSession(connection, image, info, features);
        }
        finally
        {
            ioContext.Dispose(); // the image holds it from here on
        }
    }

    private static int OpenImage(IoContextHandle ioContext, string name, bool readOnly, out ImageHandle image)
    {
        var r = readOnly ? Librbd.rbd_open_read_only(ioContext, name, out image, null) : Librbd.rbd_open(ioContext, name, out image, null);
        if (r < 0)
            image.Dispose();
        return r;
    }

    /// <summary>The image's size now (librbd refreshes it when the header changed).</summary>
    public long Size()
    {
        var r = Librbd.rbd_get_size(Image, out var size);
        if (r < 0)
            throw new RbdException(r, $"Could not read the image's size: {Errno.Describe(r)}.");
        return (long)size;
    }

    /// <summary>Calls <paramref name="onUpdate"/> on a pool thread whenever the image's header changes (a resize, a feature, a lock).</summary>
    public void Watch(IImageWatcher onUpdate)
    {
        watchTarget = GCHandle.Alloc(onUpdate);
        var r = Librbd.rbd_update_watch(Image, out watchHandle, &OnUpdate, GCHandle.ToIntPtr(watchTarget));
        if (r < 0)
        {
            watchTarget.Free();
            throw new RbdException(r, $"Could not watch the image for changes: {Errno.Describe(r)}.");
        }
    }

    [UnmanagedCallersOnly]
    private static void OnUpdate(nint arg)
    {
        // A librbd thread: whatever the watcher does may wait for the cluster, so it runs on the pool.
        var watcher = (IImageWatcher)GCHandle.FromIntPtr(arg).Target!;
        ThreadPool.UnsafeQueueUserWorkItem(static w => w.ImageUpdated(), watcher, preferLocal: false);
    }

    public void Dispose()
    {
        if (watchTarget.IsAllocated)
        {
            Librbd.rbd_update_unwatch(Image, watchHandle); // waits for a callback in progress; may fail on a fenced client
            watchTarget.Free();
        }
        Image.Dispose();
        Connection.Release();
    }
}

/// <summary>Told when an image's header changed.</summary>
internal interface IImageWatcher
{
    void ImageUpdated();
}

/// <summary>The SCSI meaning of librbd's errors: what fails one command, and how.</summary>
internal static class RbdSense
{
    /// <summary>DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT (27h/07h): the cluster is full or over quota.</summary>
    public static SenseData SpaceAllocationFailed => new(SenseKey.DataProtect, 0x27, 0x07);

    /// <summary>The sense a failed operation answers with. Timeouts and fencing are NOT READY, in transition: the initiator retries.</summary>
    public static SenseData For(long r, bool write) => -r switch
    {
        Errno.ETIMEDOUT or Errno.ESHUTDOWN or Errno.ENOTCONN or Errno.EROFS => Sense.NotReadyTransitioning,
        Errno.EINVAL => Sense.InvalidFieldInCdb,
        Errno.ENOSPC or Errno.EDQUOT => SpaceAllocationFailed,
        _ => write ? Sense.WriteError : Sense.UnrecoveredReadError,
    };
}
