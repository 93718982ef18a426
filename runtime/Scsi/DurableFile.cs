using System.Runtime.InteropServices;

namespace HandlerRuntime.Scsi;

/// <summary>
/// Small state files of an LU (APTPL reservations, the sanitize resume marker) replaced all or
/// nothing across a crash: written beside the old one, fsynced, renamed over it, and the
/// directory fsynced so the rename is durable too. After a crash at any point the path holds
/// the old content or the new, never a mix.
/// </summary>
internal static partial class DurableFile
{
    public static void Replace(string path, ReadOnlySpan<byte> content)
    {
        var temp = path + ".tmp";
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            file.Write(content);
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        SyncDirectoryOf(path);
    }

    /// <summary>Removes <paramref name="path"/> durably (nothing to do when it is absent).</summary>
    public static void Delete(string path)
    {
        if (!File.Exists(path))
            return;
        File.Delete(path);
        SyncDirectoryOf(path);
    }

    private static void SyncDirectoryOf(string path)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var fd = Open(directory, 0 /* O_RDONLY */);
        if (fd < 0)
            throw new IOException($"cannot open {directory} to sync it (errno {Marshal.GetLastPInvokeError()})");
        try
        {
            if (Fsync(fd) != 0)
                throw new IOException($"fsync of {directory} failed (errno {Marshal.GetLastPInvokeError()})");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
