namespace HandlerRuntime.Fabrics.Iscsi.Protocol;

/// <summary>
/// The initiator broke the protocol in a way that ends the connection (RFC 7143 7.1.1:
/// at ErrorRecoveryLevel 0 the answer to a digest error or a sequence error is to drop
/// the connection). The reader sends a Reject with <see cref="Reason"/> where the header
/// can still be trusted, then closes this connection only.
/// </summary>
internal sealed class ProtocolException(RejectReason reason, string message, bool headerTrusted = true) : Exception(message)
{
    public RejectReason Reason { get; } = reason;
    public bool HeaderTrusted { get; } = headerTrusted;
}
