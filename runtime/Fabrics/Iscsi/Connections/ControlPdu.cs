using HandlerRuntime.Buffers;

namespace HandlerRuntime.Fabrics.Iscsi.Connections;

/// <summary>How the sender fills a PDU's StatSN field.</summary>
internal enum StatSNUse : byte
{
    /// <summary>The field is reserved.</summary>
    None,
    /// <summary>The next StatSN, not consumed (R2T, target NOP-In ping).</summary>
    Current,
    /// <summary>A new StatSN: a status-bearing response.</summary>
    Advance,
}

/// <summary>
/// A PDU other than a command's data or status (login, text, NOP-In, task management,
/// logout, reject): a prepared header plus optional data. The sender fills StatSN,
/// ExpCmdSN and MaxCmdSN at the moment it writes the PDU.
/// </summary>
internal sealed class ControlPdu
{
    public readonly byte[] Header = new byte[Protocol.Bhs.Length];
    public BufferPool.PooledBuffer? Data;
    public int DataLength;
    public StatSNUse StatSN = StatSNUse.Advance;
    /// <summary>Fill ExpCmdSN/MaxCmdSN from the session's window (false during login, where the header has them).</summary>
    public bool FillWindow = true;
    /// <summary>Login PDUs never carry digests, even on the response that ends the login.</summary>
    public bool NoDigests;
    /// <summary>Close the connection once this PDU is on the wire (logout).</summary>
    public bool CloseAfter;
    /// <summary>Runs after the PDU is on the wire.</summary>
    public Action? AfterSend;

    public static ControlPdu Create(Protocol.Opcode opcode, byte flags, uint itt, ReadOnlySpan<byte> data = default)
    {
        var pdu = new ControlPdu();
        Protocol.Bhs.PutOpcode(pdu.Header, opcode);
        Protocol.Bhs.PutFlags(pdu.Header, flags);
        Protocol.Bhs.PutInitiatorTaskTag(pdu.Header, itt);
        if (!data.IsEmpty)
        {
            pdu.Data = BufferPool.Shared.Rent(data.Length);
            data.CopyTo(pdu.Data.Span);
            pdu.DataLength = data.Length;
        }
        return pdu;
    }
}
