namespace HandlerRuntime.Fabrics.Iscsi.Login;

/// <summary>Session-wide operational parameters, RFC 7143 defaults until negotiated.</summary>
internal sealed class SessionParameters
{
    public int MaxConnections = 1;
    public bool InitialR2T = true;
    public bool ImmediateData = true;
    public int MaxBurstLength = 262144;
    public int FirstBurstLength = 65536;
    public int DefaultTime2Wait = 2;
    public int DefaultTime2Retain = 20;
    public int MaxOutstandingR2T = 1;
    public bool DataPduInOrder = true;
    public bool DataSequenceInOrder = true;
    public int ErrorRecoveryLevel;
}

/// <summary>Per-connection parameters: digests and the receive limits each side declared.</summary>
internal sealed class ConnectionParameters
{
    public bool HeaderDigest;
    public bool DataDigest;
    /// <summary>What the initiator accepts in one data segment (our send limit).</summary>
    public int InitiatorMaxRecvDataSegmentLength = 8192;
    /// <summary>What this target accepts in one data segment.</summary>
    public int TargetMaxRecvDataSegmentLength = 8192;
}
