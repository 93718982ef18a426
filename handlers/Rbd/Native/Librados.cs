using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.Rbd.Native;

/// <summary>
/// The part of librados.h (Ceph 16) the handler uses. Every call here may block on the
/// network: the handler makes them on pool threads, never on a librbd callback thread.
/// </summary>
internal static unsafe partial class Librados
{
    private const string Lib = "librados.so.2";

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rados_create(out ClusterHandle cluster, string? id);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rados_conf_read_file(ClusterHandle cluster, string? path);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rados_conf_set(ClusterHandle cluster, string option, string value);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rados_conf_get(ClusterHandle cluster, string option, byte* buf, nuint len);

    [LibraryImport(Lib)]
    public static partial int rados_connect(ClusterHandle cluster);

    [LibraryImport(Lib)]
    public static partial void rados_shutdown(nint cluster);

    [LibraryImport(Lib)]
    public static partial int rados_cluster_fsid(ClusterHandle cluster, byte* buf, nuint len);

    [LibraryImport(Lib)]
    public static partial ulong rados_get_instance_id(ClusterHandle cluster);

    [LibraryImport(Lib)]
    public static partial int rados_getaddrs(ClusterHandle cluster, out nint addrs);

    [LibraryImport(Lib)]
    public static partial void rados_buffer_free(nint buffer);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rados_ioctx_create(ClusterHandle cluster, string poolName, out IoContextHandle ioctx);

    [LibraryImport(Lib)]
    public static partial void rados_ioctx_destroy(nint ioctx);

    /// <summary>The connection's own address, as lock owners are named ("127.0.0.1:0/3512347"); null when unknown.</summary>
    public static string? Address(ClusterHandle cluster)
    {
        if (rados_getaddrs(cluster, out var addrs) < 0)
            return null;
        var text = Marshal.PtrToStringUTF8(addrs);
        rados_buffer_free(addrs);
        return text;
    }

    /// <summary>The cluster's fsid, or null when it cannot be read.</summary>
    public static string? Fsid(ClusterHandle cluster)
    {
        var buf = stackalloc byte[64];
        return rados_cluster_fsid(cluster, buf, 64) >= 0 ? Marshal.PtrToStringUTF8((nint)buf) : null;
    }

    /// <summary>Reads a config value of a (created, maybe unconnected) cluster handle; null when unknown.</summary>
    public static string? ConfGet(ClusterHandle cluster, string option)
    {
        var buf = stackalloc byte[256];
        return rados_conf_get(cluster, option, buf, 256) == 0 ? Marshal.PtrToStringUTF8((nint)buf) : null;
    }
}
