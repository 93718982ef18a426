using System.Globalization;
using HandlerRuntime.Handlers.Rbd.Native;
using Microsoft.Extensions.Logging;

namespace HandlerRuntime.Handlers.Rbd;

/// <summary>What tells one cluster connection from another: LUNs that agree on all three share one.</summary>
/// <param name="ConfPath">The ceph.conf read (null: librados' default search).</param>
/// <param name="ClientId">The client id (client.&lt;id&gt;).</param>
/// <param name="OsdOpTimeoutSeconds">rados_osd_op_timeout, a setting of the connection, so part of its identity.</param>
internal readonly record struct ClusterKey(string? ConfPath, string ClientId, int? OsdOpTimeoutSeconds)
{
    public override string ToString() => $"client.{ClientId} of {ConfPath ?? "the default ceph.conf"}";
}

/// <summary>
/// One librados connection, shared by every LUN whose <see cref="ClusterKey"/> matches and counted
/// by them: the last one to let go shuts it down. Blocklisting fences a whole connection, so a
/// fenced one is retired from sharing (<see cref="Retire"/>) and the LUNs on it reconnect.
/// </summary>
internal sealed class ClusterConnection
{
    private static readonly Dictionary<ClusterKey, ClusterConnection> Shared = new();
    private static readonly SemaphoreSlim Connecting = new(1, 1);

    private int users;

    private ClusterConnection(ClusterKey key, ClusterHandle handle, int osdOpTimeout)
    {
        Key = key;
        Handle = handle;
        OsdOpTimeoutSeconds = osdOpTimeout;
        Fsid = Librados.Fsid(handle) ?? "unknown";
        Address = Librados.Address(handle) ?? "unknown";
        InstanceId = Librados.rados_get_instance_id(handle);
    }

    public ClusterKey Key { get; }

    public ClusterHandle Handle { get; }

    /// <summary>The cluster's fsid.</summary>
    public string Fsid { get; }

    /// <summary>This client's address, as the cluster names lock owners.</summary>
    public string Address { get; }

    /// <summary>client.&lt;id&gt;.&lt;instance&gt;: the global id the cluster gave this connection.</summary>
    public ulong InstanceId { get; }

    /// <summary>The osd_op_timeout in force on this connection (after the heartbeat floor).</summary>
    public int OsdOpTimeoutSeconds { get; }

    /// <summary>Set once the cluster fenced this connection; nothing new is opened on it.</summary>
    public bool Retired { get; private set; }

    /// <summary>Shares the live connection for <paramref name="key"/>, connecting when there is none.</summary>
    public static async Task<ClusterConnection> AcquireAsync(ClusterKey key, ILogger log, CancellationToken ct)
    {
        await Connecting.WaitAsync(ct);
        try
        {
            lock (Shared)
            {
                if (Shared.TryGetValue(key, out var live))
                {
                    live.users++;
                    return live;
                }
            }
            // rados_connect waits for the monitors (at most client_mount_timeout): a pool thread waits, not the caller's.
            var made = await Task.Run(() => Connect(key, ConnectTimeoutSeconds(key), log), ct);
            lock (Shared)
            {
                made.users = 1;
                Shared[key] = made;
            }
            log.LogInformation("rbd: connected to Ceph cluster {Fsid} as client.{Id}.{Instance} ({Address}), osd_op_timeout {Timeout} s",
                made.Fsid, key.ClientId, made.InstanceId, made.Address, made.OsdOpTimeoutSeconds);
            return made;
        }
        finally
        {
            Connecting.Release();
        }
    }

    /// <summary>One LUN lets go; the last one shuts the connection down.</summary>
    public void Release()
    {
        lock (Shared)
        {
            if (--users > 0)
                return;
            if (Shared.TryGetValue(Key, out var live) && live == this)
                Shared.Remove(Key);
        }
        Handle.Dispose(); // closes once the I/O contexts made from it are gone
    }

    /// <summary>The cluster fenced this connection: LUNs that acquire from now on get a new one.</summary>
    public void Retire()
    {
        lock (Shared)
        {
            Retired = true;
            if (Shared.TryGetValue(Key, out var live) && live == this)
                Shared.Remove(Key);
        }
    }

    /// <summary>How long opening a LUN waits for the monitors: its osd_op_timeout, at most 15 s.</summary>
    private static int ConnectTimeoutSeconds(ClusterKey key) => Math.Clamp(key.OsdOpTimeoutSeconds ?? 15, 3, 15);

    /// <summary>
    /// Connects without sharing, waiting at most <paramref name="timeoutSeconds"/> for the monitors.
    /// Throws <see cref="RbdException"/> with a sentence for the user when that fails.
    /// </summary>
    public static ClusterConnection Connect(ClusterKey key, int timeoutSeconds, ILogger log)
    {
        var r = Librados.rados_create(out var handle, key.ClientId);
        if (r < 0)
        {
            handle.Dispose();
            throw new RbdException(r, $"librados could not create a client.{key.ClientId} handle ({Errno.Describe(r)}).");
        }
        try
        {
            r = Librados.rados_conf_read_file(handle, key.ConfPath);
            if (r < 0 && key.ConfPath is not null)
                throw new RbdException(r, $"librados could not read {key.ConfPath} ({Errno.Describe(r)}); give conf=<path> of a readable ceph.conf.");
            // As tcmu-runner: no client cache, so every completed write is on the OSDs and two
            // gateways never serve stale cached data to each other.
            Set(handle, "rbd_cache", "false");
            var timeout = OsdOpTimeout(handle, key.OsdOpTimeoutSeconds, log);
            Set(handle, "rados_osd_op_timeout", timeout.ToString(CultureInfo.InvariantCulture));
            Set(handle, "rados_mon_op_timeout", timeout.ToString(CultureInfo.InvariantCulture));
            Set(handle, "client_mount_timeout", timeoutSeconds.ToString(CultureInfo.InvariantCulture));
            r = Librados.rados_connect(handle);
            if (r < 0)
            {
                var mons = Librados.ConfGet(handle, "mon_host") is { Length: > 0 } m ? m : "none configured";
                throw new RbdException(r, r == -Errno.ETIMEDOUT
                    ? $"The Ceph cluster of {key} is unreachable: its monitors ({mons}) did not answer within {timeoutSeconds} s; check that they run and that this host can reach them."
                    : $"Could not connect to the Ceph cluster of {key} (monitors {mons}): {Errno.Describe(r)}; check the conf file, the keyring and the client id.");
            }
            return new ClusterConnection(key, handle, timeout);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static void Set(ClusterHandle handle, string option, string value)
    {
        var r = Librados.rados_conf_set(handle, option, value);
        if (r < 0)
            throw new RbdException(r, $"librados refused {option}={value} ({Errno.Describe(r)}).");
    }

    /// <summary>
    /// tcmu-runner's rule: the op timeout must outlast the time the cluster takes to notice a dead
    /// OSD (osd_heartbeat_grace + osd_heartbeat_interval), or I/O fails where it only had to wait
    /// for another OSD. A shorter or missing value becomes that sum + 5 s.
    /// </summary>
    private static int OsdOpTimeout(ClusterHandle handle, int? requested, ILogger log)
    {
        var grace = int.TryParse(Librados.ConfGet(handle, "osd_heartbeat_grace"), CultureInfo.InvariantCulture, out var g) ? g : 20;
        var interval = int.TryParse(Librados.ConfGet(handle, "osd_heartbeat_interval"), CultureInfo.InvariantCulture, out var i) ? i : 6;
        var floor = grace + interval;
        if (requested is { } want && want > floor)
            return want;
        if (requested is not null)
            log.LogWarning("rbd: osd_op_timeout={Requested} must be longer than osd_heartbeat_grace ({Grace}) + osd_heartbeat_interval ({Interval}); using {Used} s",
                requested, grace, interval, floor + 5);
        return floor + 5;
    }
}
