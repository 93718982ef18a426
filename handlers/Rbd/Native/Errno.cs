namespace HandlerRuntime.Handlers.Rbd.Native;

/// <summary>The Linux errno values librados and librbd return (negated) that the handler tells apart.</summary>
internal static class Errno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EIO = 5;
    public const int ENOMEM = 12;
    public const int EACCES = 13;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int EINVAL = 22;
    public const int EROFS = 30;
    public const int ERANGE = 34;
    public const int ENOSPC = 28;
    public const int EDQUOT = 122;
    public const int EILSEQ = 84;
    public const int ECANCELED = 125;
    /// <summary>Also EBLOCKLISTED: this client was fenced (blocklisted) by the cluster.</summary>
    public const int ESHUTDOWN = 108;
    public const int ETIMEDOUT = 110;
    public const int ENOTCONN = 107;

    /// <summary>"error 110 (Connection timed out)" for log lines and user messages.</summary>
    public static string Describe(int negativeErrno)
    {
        var e = -negativeErrno;
        var text = e switch
        {
            ENOENT => "No such file or directory",
            EIO => "Input/output error",
            EACCES => "Permission denied",
            EPERM => "Operation not permitted",
            EBUSY => "Device or resource busy",
            EEXIST => "File exists",
            EINVAL => "Invalid argument",
            EROFS => "Read-only file system (another client holds the image's exclusive lock)",
            ENOSPC => "No space left on device",
            EDQUOT => "Quota exceeded",
            ESHUTDOWN => "this client is blocklisted by the cluster",
            ETIMEDOUT => "Connection timed out",
            ENOTCONN => "Transport endpoint is not connected",
            _ => "",
        };
        return text.Length == 0 ? $"error {e}" : $"error {e} ({text})";
    }
}
