using HandlerRuntime.Sdk;
using Serilog;

namespace HandlerRuntime.Devices;

/// <summary>
/// Logs a store's failures (EIO, ENOSPC, a lost path) without flooding the log when a disk
/// fails every command: the first at once, then at most one line a second with how many
/// were not logged.
/// </summary>
internal sealed class FailureLog
{
    private long lastTicks = long.MinValue;
    private int suppressed;

    public void Report(ILogger log, string lun, string command, ScsiException failure)
    {
        var now = Environment.TickCount64;
        var last = Interlocked.Read(ref lastTicks);
        if (now - last < 1000 || Interlocked.CompareExchange(ref lastTicks, now, last) != last)
        {
            Interlocked.Increment(ref suppressed);
            return;
        }
        var more = Interlocked.Exchange(ref suppressed, 0);
        var answer = failure.Status == ScsiStatus.CheckCondition ? failure.Sense.ToString() : failure.Status.ToString();
        log.Warning("LUN {Lun}: {Command} failed in the store ({Reason}); answering {Answer}{More}", lun, command, failure.Message, answer,
            more == 0 ? "" : $" ({more} more such failures in the last second not logged)");
    }
}
