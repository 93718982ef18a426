using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.Qcow;

/// <summary>fdatasync, which .NET does not expose for a positional file handle.</summary>
internal static partial class Libc
{
    [LibraryImport("libc", SetLastError = true)]
    public static partial int fdatasync(int fd);
}
