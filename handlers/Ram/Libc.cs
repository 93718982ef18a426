using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.Ram;

/// <summary>mmap and friends, which .NET's MemoryMappedFile does not expose with the flags needed here; file calls are in Shared/Posix.</summary>
internal static unsafe partial class Libc
{
    public const int ProtRead = 1, ProtWrite = 2;
    public const int MapShared = 0x01, MapPrivate = 0x02, MapAnonymous = 0x20, MapNoReserve = 0x4000;
    public const int MsSync = 4;
    public const int MadvDontNeed = 4;
    public const int MremapMayMove = 1;
    public static readonly nint MapFailed = -1;

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int munmap(nint addr, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint mremap(nint oldAddress, nuint oldSize, nuint newSize, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int msync(nint addr, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int madvise(nint addr, nuint length, int advice);


    public static int Errno => Marshal.GetLastPInvokeError();
}
