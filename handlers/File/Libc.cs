using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.File;

/// <summary>The few Linux calls .NET does not expose: fdatasync, fallocate, lseek with SEEK_DATA/SEEK_HOLE.</summary>
internal static partial class Libc
{
    public const int FallocKeepSize = 0x01;
    public const int FallocPunchHole = 0x02;
    public const int FallocZeroRange = 0x10;
    public const int SeekEnd = 2;
    public const int SeekData = 3;
    public const int SeekHole = 4;
    public const int ENXIO = 6;
    public const int EOPNOTSUPP = 95;

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
