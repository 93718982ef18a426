using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.Zbc;

/// <summary>The Linux calls .NET does not expose: fdatasync, fsync, fallocate, fstat, and a directory fsync.</summary>
internal static partial class Libc
{
    public const int FallocKeepSize = 0x01;
    public const int FallocPunchHole = 0x02;
    public const int EOPNOTSUPP = 95;
    public const int ENODEV = 19;
    private const int ORdOnly = 0, ODirectory = 0x10000;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fdatasync(int fd);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fsync(int fd);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fallocate(int fd, int mode, long offset, long length);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int fstat(int fd, byte* buf);

    /// <summary>Makes a rename or create in <paramref name="directory"/> durable.</summary>
    public static void SyncDirectory(string directory)
    {
        var fd = open(directory, ORdOnly | ODirectory);
        if (fd < 0)
            return; // best effort: some filesystems refuse to open directories
        fsync(fd);
        close(fd);
    }

    /// <summary>Whether the open file is a regular file (S_IFREG), from fstat's st_mode.</summary>
    public static unsafe bool IsRegularFile(int fd)
    {
        // st_mode sits at offset 24 in x86_64's struct stat and at 16 in the generic (arm64) one.
        var modeOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        var buf = stackalloc byte[256];
        if (fstat(fd, buf) != 0)
            return false;
        var mode = *(uint*)(buf + modeOffset);
        return (mode & 0xF000) == 0x8000;
    }
}
