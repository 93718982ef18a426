using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.Shared;

/// <summary>
/// The Linux calls for files that .NET does not expose and that several handlers need:
/// fdatasync and fsync, fallocate, lseek with SEEK_DATA/SEEK_HOLE, fstat's file type,
/// a directory fsync and access(2). One source, compiled into each handler plugin
/// (handlers/Directory.Build.props links it): plugins cannot share the runtime's code.
/// </summary>
internal static partial class Posix
{
    public const int FallocKeepSize = 0x01;
    public const int FallocPunchHole = 0x02;
    public const int FallocZeroRange = 0x10;
    public const int SeekEnd = 2;
    public const int SeekData = 3;
    public const int SeekHole = 4;
    private const int ORdOnly = 0, ODirectory = 0x10000;
    private const int WOk = 2, XOk = 1;
    private const uint SIfMt = 0xF000, SIfReg = 0x8000, SIfBlk = 0x6000;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fdatasync(int fd);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fsync(int fd);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fallocate(int fd, int mode, long offset, long length);

    [LibraryImport("libc", SetLastError = true)]
    public static partial long lseek(int fd, long offset, int whence);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int fstat(int fd, byte* buf);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int access(string path, int mode);

    /// <summary>Whether the open file is a regular file (S_IFREG).</summary>
    public static bool IsRegularFile(int fd) => FileType(fd) == SIfReg;

    /// <summary>Whether the open file is a block device (S_IFBLK).</summary>
    public static bool IsBlockDevice(int fd) => FileType(fd) == SIfBlk;

    private static unsafe uint FileType(int fd)
    {
        // st_mode sits at offset 24 in x86_64's struct stat and at 16 in the generic (arm64) one.
        var modeOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        var buf = stackalloc byte[256];
        if (fstat(fd, buf) != 0)
            return 0;
        return *(uint*)(buf + modeOffset) & SIfMt;
    }

    /// <summary>Makes a rename or create in <paramref name="directory"/> durable (best effort: some filesystems refuse to open directories).</summary>
    public static void SyncDirectory(string directory)
    {
        var fd = open(directory, ORdOnly | ODirectory);
        if (fd < 0)
            return;
        fsync(fd);
        close(fd);
    }

    /// <summary>
    /// Why a file at <paramref name="path"/> could not be created, when that can be told without
    /// creating it (its directory is missing, is not a directory, or cannot be written, as
    /// tcmu-runner's file handler checks), else null.
    /// </summary>
    public static string? WhyNotCreatable(string path)
    {
        var dir = Path.GetDirectoryName(path);
        if (string.IsNullOrEmpty(dir))
            return null;
        if (System.IO.File.Exists(dir))
            return $"{dir} is a file, not a directory, so {path} cannot be created in it.";
        if (!Directory.Exists(dir))
            return $"the directory {dir} does not exist; create it first (mkdir -p {dir}).";
        if (access(dir, WOk | XOk) != 0)
            return $"the directory {dir} is not writable ({Marshal.GetLastPInvokeError() switch { 30 => "read-only filesystem", 13 => "permission denied", var e => $"errno {e}" }}), so {path} cannot be created there.";
        return null;
    }
}
