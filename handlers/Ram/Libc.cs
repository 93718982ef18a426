using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.Ram;

/// <summary>mmap and friends, which .NET's MemoryMappedFile does not expose with the flags needed here.</summary>
internal static unsafe partial class Libc
{
    public const int ProtRead = 1, ProtWrite = 2;
    public const int MapShared = 0x01, MapPrivate = 0x02, MapAnonymous = 0x20, MapNoReserve = 0x4000;
    public const int MsSync = 4;
    public const int MadvDontNeed = 4;
    public const int MremapMayMove = 1;
    public const int FallocKeepSize = 0x01, FallocPunchHole = 0x02;
    public static readonly nint MapFailed = -1;
    public const int SeekData = 3, SeekHole = 4, ENXIO = 6;

    [LibraryImport("libc", SetLastError = true)]
    public static partial long lseek(int fd, long offset, int whence);

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

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fallocate(int fd, int mode, long offset, long length);

    public static int Errno => Marshal.GetLastPInvokeError();
}
