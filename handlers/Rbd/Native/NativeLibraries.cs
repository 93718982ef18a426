using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.Rbd.Native;

/// <summary>Whether librados and librbd can be loaded, so a host without them gets a sentence instead of a DllNotFoundException.</summary>
internal static class NativeLibraries
{
    private static readonly Lazy<string?> Missing = new(() =>
    {
        foreach (var lib in new[] { "librados.so.2", "librbd.so.1" })
        {
            if (!NativeLibrary.TryLoad(lib, typeof(NativeLibraries).Assembly, null, out _))
                return $"{lib} cannot be loaded; install Ceph's client libraries (apt-get install librbd1).";
        }
        return null;
    });

    public static bool Available(out string missing)
    {
        missing = Missing.Value ?? "";
        return Missing.Value is null;
    }
}
