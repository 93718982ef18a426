using System.Diagnostics;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Metrics;

/// <summary>What a command was, for counting.</summary>
public enum CommandKind
{
    /// <summary>Moved data from the medium (READ, VERIFY with data ...).</summary>
    Read,
    /// <summary>Changed the medium (WRITE, WRITE SAME, UNMAP ...).</summary>
    Write,
    /// <summary>Everything else (INQUIRY, TEST UNIT READY, SYNCHRONIZE CACHE ...).</summary>
    Other,
}

/// <summary>
/// One LUN's command statistics, the single source for `hrt stats` and the metrics endpoint:
/// commands, bytes and latency by kind (with a fixed-bucket histogram for percentiles), errors
/// by sense key and other non-GOOD statuses, and commands in flight. Every update is an
/// interlocked add on a preallocated field: no lock, no allocation on the command path.
/// </summary>
public sealed class LunStats
{
    /// <summary>Upper bounds of the latency buckets, in seconds (a last bucket takes the rest).</summary>
    public static readonly double[] LatencyBucketSeconds = [25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10];

    private static readonly long[] BucketTicks = LatencyBucketSeconds.Select(s => (long)(s * Stopwatch.Frequency)).ToArray();

    private readonly KindStats[] kinds = [new(), new(), new()];
    private readonly long[] senseKeys = new long[16];
    private long busy, taskSetFull, reservationConflicts, aborted, inFlight;

    public KindStats Of(CommandKind kind) => kinds[(int)kind];

    /// <summary>CHECK CONDITIONs answered, by sense key (index = the key's value).</summary>
    public long SenseKeyCount(SenseKey key) => Volatile.Read(ref senseKeys[(int)key & 0xF]);

    public long Busy => Volatile.Read(ref busy);
    public long TaskSetFull => Volatile.Read(ref taskSetFull);
    public long ReservationConflicts => Volatile.Read(ref reservationConflicts);
    public long Aborted => Volatile.Read(ref aborted);

    /// <summary>Commands the LU has taken and not finished (its queue depth now).</summary>
    public long InFlight => Volatile.Read(ref inFlight);

    internal void Started() => Interlocked.Increment(ref inFlight);

    internal void Finished(CommandKind kind, long bytes, long elapsedTicks, ScsiStatus status, SenseKey senseKey)
    {
        Interlocked.Decrement(ref inFlight);
        kinds[(int)kind].Add(bytes, elapsedTicks);
        switch (status)
        {
            case ScsiStatus.Good:
                break;
            case ScsiStatus.CheckCondition:
                Interlocked.Increment(ref senseKeys[(int)senseKey & 0xF]);
                break;
            case ScsiStatus.Busy:
                Interlocked.Increment(ref busy);
                break;
            case ScsiStatus.TaskSetFull:
                Interlocked.Increment(ref taskSetFull);
                break;
            case ScsiStatus.ReservationConflict:
                Interlocked.Increment(ref reservationConflicts);
                break;
            default:
                Interlocked.Increment(ref aborted);
                break;
        }
    }

    /// <summary>Commands of one kind: how many, their bytes, their summed and bucketed latency.</summary>
    public sealed class KindStats
    {
        private readonly long[] buckets = new long[LatencyBucketSeconds.Length + 1];
        private long count, bytes, latencyTicks;

        public long Count => Volatile.Read(ref count);
        public long Bytes => Volatile.Read(ref bytes);
        public double LatencySeconds => (double)Volatile.Read(ref latencyTicks) / Stopwatch.Frequency;

        /// <summary>Commands per bucket of <see cref="LatencyBucketSeconds"/> (not cumulative), the last one past 10 s.</summary>
        public long[] Buckets()
        {
            var copy = new long[buckets.Length];
            for (var i = 0; i < copy.Length; i++)
                copy[i] = Volatile.Read(ref buckets[i]);
            return copy;
        }

        internal void Add(long moved, long elapsedTicks)
        {
            Interlocked.Increment(ref count);
            if (moved > 0)
                Interlocked.Add(ref bytes, moved);
            Interlocked.Add(ref latencyTicks, elapsedTicks);
            var i = 0;
            while (i < BucketTicks.Length && elapsedTicks > BucketTicks[i])
                i++;
            Interlocked.Increment(ref buckets[i]);
        }
    }
}
