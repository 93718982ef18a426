using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.File;

/// <summary>The few Linux calls .NET does not expose: fdatasync, fallocate, lseek with SEEK_DATA/SEEK_HOLE, preadv2/pwritev2, fstatfs.</summary>
internal static partial class Libc
{
    public const int FallocKeepSize = 0x01;
    public const int FallocPunchHole = 0x02;
    public const int FallocZeroRange = 0x10;
    public const int SeekEnd = 2;
    public const int SeekData = 3;
    public const int SeekHole = 4;
    public const int ENXIO = 6;
    public const int EINTR = 4;
    public const int EINVAL = 22;
    public const int EOPNOTSUPP = 95;
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

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fdatasync(int fd);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fallocate(int fd, int mode, long offset, long length);

    [LibraryImport("libc", SetLastError = true)]
    public static partial long lseek(int fd, long offset, int whence);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int fstat(int fd, byte* buf);

    /// <summary>Whether the open file is a block device (S_IFBLK), from fstat's st_mode.</summary>
    public static unsafe bool IsBlockDevice(int fd)
    {
        // st_mode sits at offset 24 in x86_64's struct stat and at 16 in the generic (arm64) one.
        var modeOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        var buf = stackalloc byte[256];
        if (fstat(fd, buf) != 0)
            return false;
        var mode = *(uint*)(buf + modeOffset);
        return (mode & 0xF000) == 0x6000;
    }
}
