using HandlerRuntime.Config;

namespace HandlerRuntime.Fabrics;

/// <summary>
/// A transport that brings initiators to the targets (iSCSI, TCMU, NBD). Fabrics see
/// only the SCSI core (<see cref="Scsi.TargetRegistry"/>, <see cref="Scsi.ScsiTarget"/>,
/// <see cref="Scsi.ScsiTask"/>), never a handler.
/// </summary>
public interface IFabric : IAsyncDisposable
{
    string Name { get; }

    /// <summary>Starts listening as configured. Throws with a user-facing sentence when it cannot (e.g. a port in use).</summary>
    Task StartAsync(RuntimeSettings settings, CancellationToken cancellationToken);

    /// <summary>Applies a reloaded configuration (portals added or removed, fabric options).</summary>
    Task ApplyAsync(RuntimeSettings settings);

    /// <summary>Where it listens, for status output.</summary>
    IReadOnlyList<string> Endpoints { get; }

    /// <summary>Live sessions, for <c>hrt ls</c>.</summary>
    IReadOnlyList<SessionInfo> Sessions { get; }

    /// <summary>
    /// Transport connections open now, in any phase (a connection still logging in counts),
    /// from the same bookkeeping that enforces the fabric's connection limit.
    /// </summary>
    int ConnectionCount { get; }
}

/// <summary>One initiator session as shown to operators.</summary>
/// <param name="Fabric">"iscsi", ...</param>
/// <param name="Target">Target name.</param>
/// <param name="Initiator">Initiator name (IQN).</param>
/// <param name="InitiatorPort">Initiator port name (with ISID).</param>
/// <param name="Connections">Remote addresses of its connections.</param>
/// <param name="HeaderDigest">Negotiated header digest (None or CRC32C).</param>
/// <param name="DataDigest">Negotiated data digest.</param>
/// <param name="Details">Other negotiated or runtime facts worth showing.</param>
public sealed record SessionInfo(
    string Fabric,
    string Target,
    string Initiator,
    string InitiatorPort,
    IReadOnlyList<string> Connections,
    string HeaderDigest,
    string DataDigest,
    IReadOnlyDictionary<string, string> Details);
