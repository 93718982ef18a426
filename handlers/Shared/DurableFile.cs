using System.Runtime.InteropServices;
using HandlerRuntime.Sdk;
using Microsoft.Win32.SafeHandles;

namespace HandlerRuntime.Handlers.Shared;

/// <summary>
/// Small files replaced all or nothing, across a crash: written beside the old one, made
/// durable, renamed over it, and the directory made durable so that the rename is too. After a
/// crash at any point the path holds the old content or the new, never a mix or nothing (the
/// cow/ block map, the crypt/ key).
/// </summary>
internal static class DurableFile
{
    /// <summary>Replaces <paramref name="path"/> by <paramref name="content"/>, created with <paramref name="mode"/>; durable when it returns.</summary>
    public static void Replace(string path, ReadOnlySpan<byte> content, UnixFileMode mode)
    {
        var temp = path + ".tmp";
        System.IO.File.Delete(temp); // a leftover of a crash may have another mode; UnixCreateMode applies only when creating
        using (var handle = System.IO.File.OpenHandle(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, FileOptions.None, preallocationSize: 0))
        {
            System.IO.File.SetUnixFileMode(handle, mode);
            RandomAccess.Write(handle, content, 0);
            Sync(handle, temp);
        }
        System.IO.File.Move(temp, path, overwrite: true); // rename(2): atomic
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>fdatasync: the file's completed writes (and its size) are durable.</summary>
    public static void Sync(SafeFileHandle handle, string name)
    {
        if (Posix.fdatasync((int)handle.DangerousGetHandle()) != 0)
            throw new DeviceIOException(Marshal.GetLastPInvokeError(), $"{name}: fdatasync");
    }

    /// <summary>fsync of a directory: the names created, renamed or removed in it are durable.</summary>
    public static void SyncDirectory(string directory) => Posix.SyncDirectory(directory);
}
