using HandlerRuntime.Handlers.Rbd.Native;

namespace HandlerRuntime.Handlers.Rbd;

/// <summary>A librados or librbd call failed with <see cref="Errno"/> (negative, as the libraries return it).</summary>
internal sealed class RbdException(int errno, string message) : Exception(message)
{
    public int Errno { get; } = errno;

    /// <summary>The cluster may answer again: worth retrying with backoff.</summary>
    public bool Transient => Errno is -Native.Errno.ETIMEDOUT or -Native.Errno.ESHUTDOWN or -Native.Errno.ENOTCONN or -Native.Errno.EIO;
}
