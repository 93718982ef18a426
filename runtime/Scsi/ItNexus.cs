namespace HandlerRuntime.Scsi;

/// <summary>
/// An I_T nexus: one initiator port talking to one target port. Unit attentions and
/// reservations belong to a nexus, so one object exists per pair of names for the life
/// of the process (a re-login with the same ISID is the same nexus).
/// </summary>
public sealed class ItNexus
{
    private static long nextId;

    internal ItNexus(string initiatorPort, string initiatorName, TargetPort targetPort)
    {
        InitiatorPort = initiatorPort;
        InitiatorName = initiatorName;
        TargetPort = targetPort;
        Id = Interlocked.Increment(ref nextId);
    }

    /// <summary>A small number unique in this process.</summary>
    public long Id { get; }

    /// <summary>The initiator port name, e.g. <c>iqn.1994-05.com.redhat:x,i,0x23d000000001</c>.</summary>
    public string InitiatorPort { get; }

    /// <summary>The initiator device name (for iSCSI, the IQN).</summary>
    public string InitiatorName { get; }

    /// <summary>The target port this nexus reaches.</summary>
    public TargetPort TargetPort { get; }

    public override string ToString() => $"{InitiatorPort} -> {TargetPort.Name}";
}

/// <summary>
/// A SCSI target port: its name (for iSCSI <c>&lt;target iqn&gt;,t,0x&lt;tpgt&gt;</c>), the target
/// device's name, relative port identifier, port group and SCSI transport protocol
/// identifier (5 = iSCSI), as VPD 83h reports them.
/// </summary>
public sealed record TargetPort(string Name, string TargetName, ushort RelativePortId, ushort PortGroup, byte ProtocolId);

/// <summary>Interns nexus objects by name.</summary>
public sealed class NexusTable
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string, string), ItNexus> nexuses = new();

    public ItNexus Get(string initiatorPort, string initiatorName, TargetPort targetPort)
        => nexuses.GetOrAdd((initiatorPort, targetPort.Name), static (_, s) => new ItNexus(s.initiatorPort, s.initiatorName, s.targetPort),
            (initiatorPort, initiatorName, targetPort));
}
