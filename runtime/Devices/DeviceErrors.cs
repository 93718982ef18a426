using HandlerRuntime.Sdk;
using static HandlerRuntime.Sdk.Errnos;

namespace HandlerRuntime.Devices;

/// <summary>
/// What a store's failure means to an initiator, as arrays answer: an errno from the store is
/// the medium's or the path's failure, with its own sense; anything else a device throws is a
/// bug in it (HARDWARE ERROR, logged).
/// </summary>
public static class DeviceErrors
{
    /// <summary>The errno behind <paramref name="e"/>, when it is a store's failure.</summary>
    public static int? ErrnoOf(Exception e) => e switch
    {
        DeviceIOException d => d.Errno,
        UnauthorizedAccessException => EACCES,
        TimeoutException => ETIMEDOUT,
        // .NET's IOExceptions on Linux carry the raw errno as their HResult.
        IOException io when io.HResult is > 0 and < 4096 => io.HResult,
        _ => null,
    };

    /// <summary>
    /// The SCSI answer to a store's failure during a command that <paramref name="writes"/>
    /// or not; null when <paramref name="e"/> is not one (a bug: HARDWARE ERROR).
    /// </summary>
    public static ScsiException? ToScsi(Exception e, bool writes)
    {
        if (ErrnoOf(e) is not { } errno)
            return null;
        return errno switch
        {
            ENOSPC or EDQUOT or EFBIG => new ScsiException(Sense.SpaceAllocationFailed, e.Message),
            EROFS or EPERM or EACCES => new ScsiException(Sense.WriteProtected, e.Message),
            ENXIO or ENODEV or ENOTCONN or ECONNRESET or ECONNREFUSED or ECONNABORTED or ESHUTDOWN or EHOSTUNREACH
                or ENETUNREACH or EPIPE or ESTALE => new ScsiException(Sense.NotReady, e.Message),
            ETIMEDOUT => new ScsiException(Sense.CommunicationTimeout, e.Message),
            ENOMEM or EAGAIN or EBUSY => new ScsiException(ScsiStatus.Busy, e.Message),
            EINVAL => null, // the runtime or the handler asked something malformed: a bug
            _ => new ScsiException(writes ? Sense.WriteError : Sense.UnrecoveredReadError, e.Message), // EIO, ENODATA, EBADMSG, ...
        };
    }
}
