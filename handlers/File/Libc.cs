using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.File;

/// <summary>The file handler's own Linux calls: preadv2/pwritev2 (with RWF_NOWAIT) and fstatfs; the rest are in Shared/Posix.</summary>
internal static partial class Libc
{
    /// <summary>preadv2/pwritev2: fail with EAGAIN instead of waiting for I/O (not cached, would block).</summary>
    public const int RwfNoWait = 0x08;
    private const long TmpfsMagic = 0x01021994;
    private const long RamfsMagic = 0x858458f6;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public nint Base;
        public nuint Length;
    }

    [LibraryImport("libc", SetLastError = true)]
    public static unsafe partial nint preadv2(int fd, IoVec* iov, int iovcnt, long offset, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static unsafe partial nint pwritev2(int fd, IoVec* iov, int iovcnt, long offset, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int fstatfs(int fd, byte* buf);

    /// <summary>Whether the open file lives in memory (tmpfs, ramfs): its reads and writes are memory copies that never wait for a disk.</summary>
    public static unsafe bool IsInMemoryFileSystem(int fd)
    {
        var buf = stackalloc byte[256]; // struct statfs is 120 bytes on 64-bit Linux; f_type comes first
        if (fstatfs(fd, buf) != 0)
            return false;
        var type = *(long*)buf;
        return type is TmpfsMagic or RamfsMagic;
    }

}
