using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.Rbd.Native;

/// <summary>
/// The part of librbd.h (Ceph 16, librbd 1.16) the handler uses. The rbd_aio_* calls queue and
/// return; their completion callback runs on a librbd thread. The others wait for the cluster and
/// are made on pool threads only: one made on a librbd callback thread could wait for itself.
/// </summary>
internal static unsafe partial class Librbd
{
    private const string Lib = "librbd.so.1";

    /// <summary>rbd_lock_mode_t.</summary>
    public const int LockModeExclusive = 0;

    /// <summary>features.h RBD_FEATURE_EXCLUSIVE_LOCK.</summary>
    public const ulong FeatureExclusiveLock = 1UL << 2;

    /// <summary>RBD_WRITE_ZEROES_FLAG_THICK_PROVISION: the zeroed extent stays allocated.</summary>
    public const int WriteZeroesThickProvision = 1;

    /// <summary>rbd_image_info_t.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ImageInfo
    {
        public ulong Size;
        public ulong ObjectSize;
        public ulong ObjectCount;
        public int Order;
        public fixed byte BlockNamePrefix[24];
        public long ParentPool;
        public fixed byte ParentName[96];
    }

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rbd_open(IoContextHandle ioctx, string name, out ImageHandle image, string? snapName);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rbd_open_read_only(IoContextHandle ioctx, string name, out ImageHandle image, string? snapName);

    [LibraryImport(Lib)]
    public static partial int rbd_close(nint image);

    /// <summary>Creates an image with the cluster's default features and object size (order 0 = default).</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rbd_create(IoContextHandle ioctx, string name, ulong size, ref int order);

    [LibraryImport(Lib)]
    public static partial int rbd_stat(ImageHandle image, ImageInfo* info, nuint infoSize);

    [LibraryImport(Lib)]
    public static partial int rbd_get_size(ImageHandle image, out ulong size);

    [LibraryImport(Lib)]
    public static partial int rbd_get_features(ImageHandle image, out ulong features);

    [LibraryImport(Lib)]
    public static partial int rbd_resize2(ImageHandle image, ulong size, [MarshalAs(UnmanagedType.U1)] bool allowShrink, nint progress, nint progressArg);

    [LibraryImport(Lib)]
    public static partial int rbd_is_exclusive_lock_owner(ImageHandle image, out int isOwner);

    [LibraryImport(Lib)]
    public static partial int rbd_lock_acquire(ImageHandle image, int lockMode);

    [LibraryImport(Lib)]
    public static partial int rbd_lock_release(ImageHandle image);

    [LibraryImport(Lib)]
    public static partial int rbd_lock_get_owners(ImageHandle image, out int lockMode, nint* owners, ref nuint maxOwners);

    [LibraryImport(Lib)]
    public static partial void rbd_lock_get_owners_cleanup(nint* owners, nuint count);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rbd_lock_break(ImageHandle image, int lockMode, string owner);

    [LibraryImport(Lib)]
    public static partial int rbd_update_watch(ImageHandle image, out ulong handle, delegate* unmanaged<nint, void> callback, nint arg);

    [LibraryImport(Lib)]
    public static partial int rbd_update_unwatch(ImageHandle image, ulong handle);

    [LibraryImport(Lib)]
    public static partial int rbd_diff_iterate2(ImageHandle image, nint fromSnapName, ulong offset, ulong length, byte includeParent, byte wholeObject,
        delegate* unmanaged<ulong, nuint, int, nint, int> callback, nint arg);

    // ---- asynchronous I/O ----

    [LibraryImport(Lib)]
    public static partial int rbd_aio_create_completion(nint arg, delegate* unmanaged<nint, nint, void> callback, out nint completion);

    [LibraryImport(Lib)]
    public static partial nint rbd_aio_get_return_value(nint completion);

    [LibraryImport(Lib)]
    public static partial void rbd_aio_release(nint completion);

    [LibraryImport(Lib)]
    public static partial int rbd_aio_read(nint image, ulong offset, nuint length, byte* buffer, nint completion);

    [LibraryImport(Lib)]
    public static partial int rbd_aio_write(nint image, ulong offset, nuint length, byte* buffer, nint completion);

    [LibraryImport(Lib)]
    public static partial int rbd_aio_flush(nint image, nint completion);

    [LibraryImport(Lib)]
    public static partial int rbd_aio_discard(nint image, ulong offset, ulong length, nint completion);

    [LibraryImport(Lib)]
    public static partial int rbd_aio_write_zeroes(nint image, ulong offset, nuint length, nint completion, int zeroFlags, int opFlags);

    [LibraryImport(Lib)]
    public static partial nint rbd_aio_compare_and_write(nint image, ulong offset, nuint length, byte* compare, byte* write,
        nint completion, ulong* mismatchOffset, int opFlags);

    /// <summary>The lock owners of an image (at most four are read), or an errno.</summary>
    public static int LockOwners(ImageHandle image, out string[] owners)
    {
        var buf = stackalloc nint[4];
        nuint n = 4;
        var r = rbd_lock_get_owners(image, out _, buf, ref n);
        if (r == -Errno.ENOENT)
        {
            owners = [];
            return 0;
        }
        if (r < 0)
        {
            owners = [];
            return r;
        }
        owners = new string[(int)n];
        for (var i = 0; i < owners.Length; i++)
            owners[i] = Marshal.PtrToStringUTF8(buf[i]) ?? "";
        rbd_lock_get_owners_cleanup(buf, n);
        return 0;
    }
}
