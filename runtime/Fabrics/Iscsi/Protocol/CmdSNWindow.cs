namespace HandlerRuntime.Fabrics.Iscsi.Protocol;

/// <summary>
/// The command window a response advertises (RFC 7143 4.2.2.1): ExpCmdSN, the next CmdSN the
/// target expects, and MaxCmdSN, the last it will take. Both only grow, so an older pair is
/// still a true one; an initiator keeps the larger values it has seen.
/// </summary>
public readonly record struct CmdSNWindow(uint ExpCmdSN, uint MaxCmdSN);
