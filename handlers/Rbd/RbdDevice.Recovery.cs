using HandlerRuntime.Handlers.Rbd.Native;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace HandlerRuntime.Handlers.Rbd;

/// <summary>
/// Cluster loss and return. An operation that times out (osd_op_timeout) or finds this client
/// fenced fails its command with NOT READY, in transition, and reports the connection lost: the
/// runtime then answers media commands with the same sense, which initiators retry, instead of
/// letting them hang. One recovery runs per LUN, a Polly pipeline retrying with capped exponential
/// backoff: reconnect when the connection was fenced, then read a block. When that read succeeds,
/// the connection is reported restored.
/// </summary>
internal sealed partial class RbdDevice
{
    private readonly ResiliencePipeline recovery;
    private int recovering; // 1 while a recovery runs
    private volatile string connectionState = "connected";

    private string ConnectionState => connectionState;

    private ResiliencePipeline BuildRecoveryPipeline() => new ResiliencePipelineBuilder()
        .AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<RbdException>(e => e.Transient).Handle<TimeoutRejectedException>(),
            MaxRetryAttempts = int.MaxValue, // the cluster may be away for long; the LUN keeps answering NOT READY meanwhile
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = true,
            Delay = TimeSpan.FromMilliseconds(250),
            MaxDelay = TimeSpan.FromSeconds(5),
            OnRetry = a =>
            {
                if (a.AttemptNumber % 10 == 0)
                    log.LogWarning("rbd: image {Image}: cluster still unreachable after {Attempts} attempts ({Reason})", config, a.AttemptNumber + 1, a.Outcome.Exception?.Message);
                return default;
            },
        })
        // One attempt: a reconnect (client_mount_timeout) or a probe read (osd_op_timeout), with room to spare.
        .AddTimeout(TimeSpan.FromSeconds(session.Connection.OsdOpTimeoutSeconds + 20))
        .Build();

    /// <summary>What a failed operation says about the cluster, acted on once: fencing, a timeout, a lock held elsewhere.</summary>
    private void Trouble(int r, ImageSession s, bool write)
    {
        switch (-r)
        {
            case Errno.ESHUTDOWN:
                s.Connection.Retire();
                LockLost("this gateway was blocklisted: another gateway broke its exclusive lock");
                Lost(s, "this client was blocklisted by the cluster");
                break;
            case Errno.ETIMEDOUT:
            case Errno.ENOTCONN:
                Lost(s, $"an operation got no answer within osd_op_timeout ({s.Connection.OsdOpTimeoutSeconds} s)");
                break;
            case Errno.EROFS when write:
                LockLost("another gateway holds the exclusive lock");
                break;
        }
    }

    private void Lost(ImageSession s, string reason)
    {
        if (closing.IsCancellationRequested || Interlocked.Exchange(ref recovering, 1) == 1)
            return;
        connectionState = s.Connection.Retired ? "fenced, reconnecting" : "unreachable";
        log.LogWarning("rbd: image {Image}: {Reason}; commands answer NOT READY until the cluster answers again", config, reason);
        events.ConnectionLost($"Ceph cluster {s.Connection.Fsid}: {reason}");
        _ = Task.Run(RecoverAsync);
    }

    private async Task RecoverAsync()
    {
        try
        {
            await recovery.ExecuteAsync(async ct =>
            {
                if (session.Connection.Retired)
                    await ReopenAsync(ct);
                await ProbeAsync(ct);
            }, closing.Token);
            connectionState = "connected";
            Volatile.Write(ref recovering, 0);
            log.LogInformation("rbd: image {Image}: the cluster answers again", config);
            events.ConnectionRestored();
        }
        catch (OperationCanceledException) when (closing.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            connectionState = $"failed: {e.Message}";
            log.LogError(e, "rbd: image {Image}: recovery gave up; delete and recreate the LUN once the image is usable again", config);
        }
    }

    /// <summary>One block read through the normal path: an OSD round trip, bounded by osd_op_timeout.</summary>
    private async Task ProbeAsync(CancellationToken ct)
    {
        var s = session;
        var block = new byte[blockSize];
        var op = ops.Rent();
        var result = await op.Read(s.Image, 0, block).AsTask().WaitAsync(ct);
        if (result.Return == -Errno.ESHUTDOWN)
            s.Connection.Retire();
        if (result.Return < 0)
            throw new RbdException((int)result.Return, $"probe read failed: {Errno.Describe((int)result.Return)}");
    }

    /// <summary>A fresh connection and image in place of the fenced ones; the old image closes when its last operation ends.</summary>
    private async Task ReopenAsync(CancellationToken ct)
    {
        var old = session;
        var connection = await ClusterConnection.AcquireAsync(old.Connection.Key, log, ct);
        ImageSession fresh;
        try
        {
            fresh = await Task.Run(() => ImageSession.Open(connection, config, readOnly, 0, _ => { }), ct);
        }
        catch
        {
            connection.Release();
            throw;
        }
        fresh.Watch(this);
        session = fresh;
        log.LogInformation("rbd: image {Image} reopened as client.{Id}.{Instance} ({Address})", config, config.EffectiveClientId, connection.InstanceId, connection.Address);
        _ = Task.Run(old.Dispose); // may wait for the fenced client's last operations
        ((IImageWatcher)this).ImageUpdated(); // the size may have changed while fenced
    }
}
