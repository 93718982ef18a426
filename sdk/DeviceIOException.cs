namespace HandlerRuntime.Sdk;

/// <summary>
/// A store failed with an errno (pread, pwrite, fsync, a remote peer's answer). The runtime
/// answers initiators as arrays do: EIO is MEDIUM ERROR (UNRECOVERED READ ERROR or WRITE
/// ERROR), ENOSPC and EDQUOT SPACE ALLOCATION FAILED, EROFS WRITE PROTECTED, a lost
/// connection or a vanished device NOT READY, ETIMEDOUT ABORTED COMMAND, ENOMEM BUSY.
/// .NET's own <see cref="IOException"/>s carry the errno in <see cref="Exception.HResult"/> on
/// Linux and are read the same way.
/// </summary>
public sealed class DeviceIOException : IOException
{
    /// <param name="errno">The Linux errno.</param>
    /// <param name="message">What failed, for the log (e.g. "/var/lib/hrt/a.img: pwrite at 4096").</param>
    public DeviceIOException(int errno, string message) : base($"{message}: {Errnos.Describe(errno)}", errno) => Errno = errno;

    /// <summary>The Linux errno.</summary>
    public int Errno { get; }
}

/// <summary>Linux errno values the runtime gives a meaning to, with their names.</summary>
public static class Errnos
{
#pragma warning disable CS1591 // the names are the documentation
    public const int EPERM = 1, ENOENT = 2, EINTR = 4, EIO = 5, ENXIO = 6, EAGAIN = 11, ENOMEM = 12, EACCES = 13, EBUSY = 16,
        ENODEV = 19, EINVAL = 22, EFBIG = 27, ENOSPC = 28, EROFS = 30, EPIPE = 32, ENODATA = 61, EBADMSG = 74, EOVERFLOW = 75,
        EOPNOTSUPP = 95, ENETUNREACH = 101, ECONNABORTED = 103, ECONNRESET = 104, ENOTCONN = 107, ESHUTDOWN = 108,
        ETIMEDOUT = 110, ECONNREFUSED = 111, EHOSTUNREACH = 113, ESTALE = 116, EDQUOT = 122;
#pragma warning restore CS1591

    private static readonly Dictionary<int, string> Names = new()
    {
        [EPERM] = "EPERM", [ENOENT] = "ENOENT", [EINTR] = "EINTR", [EIO] = "EIO", [ENXIO] = "ENXIO", [EAGAIN] = "EAGAIN",
        [ENOMEM] = "ENOMEM", [EACCES] = "EACCES", [EBUSY] = "EBUSY", [ENODEV] = "ENODEV", [EINVAL] = "EINVAL", [EFBIG] = "EFBIG",
        [ENOSPC] = "ENOSPC", [EROFS] = "EROFS", [EPIPE] = "EPIPE", [ENODATA] = "ENODATA", [EBADMSG] = "EBADMSG",
        [EOVERFLOW] = "EOVERFLOW", [EOPNOTSUPP] = "EOPNOTSUPP", [ENETUNREACH] = "ENETUNREACH", [ECONNABORTED] = "ECONNABORTED",
        [ECONNRESET] = "ECONNRESET", [ENOTCONN] = "ENOTCONN", [ESHUTDOWN] = "ESHUTDOWN", [ETIMEDOUT] = "ETIMEDOUT",
        [ECONNREFUSED] = "ECONNREFUSED", [EHOSTUNREACH] = "EHOSTUNREACH", [ESTALE] = "ESTALE", [EDQUOT] = "EDQUOT",
    };

    /// <summary>"EIO (5)", or "errno 1234".</summary>
    public static string Describe(int errno) => Names.TryGetValue(errno, out var name) ? $"{name} ({errno})" : $"errno {errno}";

    /// <summary>The errno named <paramref name="name"/> (EIO, ENOSPC ...), for configuration text.</summary>
    public static bool TryParse(string name, out int errno)
    {
        foreach (var (value, n) in Names)
            if (string.Equals(n, name, StringComparison.OrdinalIgnoreCase))
            {
                errno = value;
                return true;
            }
        errno = 0;
        return false;
    }

    /// <summary>The names <see cref="TryParse"/> accepts.</summary>
    public static IEnumerable<string> Known => Names.Values;
}
