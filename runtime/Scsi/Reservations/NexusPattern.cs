namespace HandlerRuntime.Scsi.Reservations;

/// <summary>
/// The I_T nexuses a registration or a reservation applies to, named rather than held as
/// <see cref="ItNexus"/> objects so that APTPL state survives a restart and a TransportID can
/// name a nexus that has not logged in yet. It is one initiator port, or every port of an
/// initiator device (a TransportID of format 00b names only the device), through one target
/// port, or through all of them (ALL_TG_PT). Names compare without regard to case: iSCSI names
/// are case-folded and the ISID is hexadecimal.
/// </summary>
/// <param name="InitiatorName">The initiator device name (for iSCSI, its IQN).</param>
/// <param name="InitiatorPort">The initiator port name (<c>name,i,0xISID</c>), or null for every port of the device.</param>
/// <param name="TargetPort">The target port name, or null for every target port.</param>
/// <param name="RelativeTargetPortId">The relative port identifier of <paramref name="TargetPort"/> (0 when all).</param>
/// <param name="ProtocolId">The SCSI transport protocol identifier of the ports (5 = iSCSI).</param>
internal readonly record struct NexusPattern(string InitiatorName, string? InitiatorPort, string? TargetPort, ushort RelativeTargetPortId, byte ProtocolId)
{
    /// <summary>Exactly one I_T nexus.</summary>
    public static NexusPattern Of(ItNexus nexus)
        => new(nexus.InitiatorName, nexus.InitiatorPort, nexus.TargetPort.Name, nexus.TargetPort.RelativePortId, nexus.TargetPort.ProtocolId);

    public bool IsAllTargetPorts => TargetPort is null;

    /// <summary>The same initiator through every target port.</summary>
    public NexusPattern ThroughAllTargetPorts() => this with { TargetPort = null, RelativeTargetPortId = 0 };

    public bool Matches(ItNexus nexus)
        => Same(InitiatorName, nexus.InitiatorName)
           && (InitiatorPort is null || Same(InitiatorPort, nexus.InitiatorPort))
           && (TargetPort is null || Same(TargetPort, nexus.TargetPort.Name));

    /// <summary>Whether every I_T nexus <paramref name="other"/> names is also named here.</summary>
    public bool Covers(NexusPattern other)
        => Same(InitiatorName, other.InitiatorName)
           && (InitiatorPort is null || (other.InitiatorPort is not null && Same(InitiatorPort, other.InitiatorPort)))
           && (TargetPort is null || (other.TargetPort is not null && Same(TargetPort, other.TargetPort)));

    /// <summary>Whether some I_T nexus is named both here and by <paramref name="other"/>.</summary>
    public bool Overlaps(NexusPattern other)
        => Same(InitiatorName, other.InitiatorName)
           && (InitiatorPort is null || other.InitiatorPort is null || Same(InitiatorPort, other.InitiatorPort))
           && (TargetPort is null || other.TargetPort is null || Same(TargetPort, other.TargetPort));

    public override string ToString()
        => $"{InitiatorPort ?? InitiatorName + " (any port)"} -> {TargetPort ?? "all target ports"}";

    private static bool Same(string a, string b) => string.Equals(a, b, StringComparison.OrdinalIgnoreCase);
}
