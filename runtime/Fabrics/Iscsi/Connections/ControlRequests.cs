using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using HandlerRuntime.Fabrics.Iscsi.Login;
using HandlerRuntime.Fabrics.Iscsi.Protocol;
using HandlerRuntime.Fabrics.Iscsi.Sessions;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Fabrics.Iscsi.Connections;

// Text (SendTargets), Logout and Task Management requests.
internal sealed partial class IscsiConnection
{
    private const int MaxTextRequest = 64 * 1024;
    private readonly List<byte> textRequest = new();

    // ---- Text (RFC 7143 11.10, Appendix C for SendTargets) ----

    private async ValueTask OnTextAsync(IscsiSession session)
    {
        var h = header.AsSpan();
        var final = Bhs.Final(h);
        var more = Bhs.Text.Continue(h);
        var itt = Bhs.InitiatorTaskTag(h);
        var ttt = Bhs.TargetTransferTag(h);
        var immediate = Bhs.Immediate(h);
        var cmdSN = Bhs.CmdSN(h);
        if (!immediate && !session.AcceptCmdSN(cmdSN))
        {
            await SkipSegmentAsync();
            return;
        }
        if (textRequest.Count + dataLength > MaxTextRequest)
            throw new ProtocolException(RejectReason.ProtocolError, "text request longer than 64 KiB");
        var data = new byte[dataLength];
        await ReadSegmentAsync(data);

        if (ttt != Bhs.ReservedTag)
        {
            // The initiator asks for the next part of a long answer.
            if (pendingText is null || pendingText.Ttt != ttt)
            {
                Reject(RejectReason.InvalidPduField);
                return;
            }
            SendTextPart(itt);
            return;
        }
        pendingText = null;
        textRequest.AddRange(data);
        if (more || !final)
        {
            var ack = ControlPdu.Create(Opcode.TextResponse, 0, itt);
            Bhs.PutTargetTransferTag(ack.Header, session.NextTtt());
            Sender.Enqueue(ack);
            return;
        }
        var keys = new List<KeyValuePair<string, string>>();
        var ok = TextKeys.TryParse(textRequest.ToArray(), keys, out _);
        textRequest.Clear();
        if (!ok)
        {
            Reject(RejectReason.InvalidPduField);
            return;
        }
        var reply = new List<byte>();
        foreach (var (key, value) in keys)
        {
            switch (key)
            {
                case "SendTargets":
                    SendTargets(session, value, reply);
                    break;
                case "MaxRecvDataSegmentLength":
                    // Declarative and allowed in full feature phase: our sends follow it from now on.
                    if (int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var m) && m is >= 512 and <= 16777215)
                        Parameters.InitiatorMaxRecvDataSegmentLength = m;
                    else
                        TextKeys.Append(reply, key, "Reject");
                    break;
                default:
                    TextKeys.Append(reply, key, key.StartsWith("X-", StringComparison.Ordinal) || key.StartsWith("X#", StringComparison.Ordinal) ? "NotUnderstood" : "Reject");
                    break;
            }
        }
        pendingText = new PendingText(session.NextTtt(), reply.ToArray());
        SendTextPart(itt);
    }

    private void SendTextPart(uint itt)
    {
        var p = pendingText!;
        var n = Math.Min(p.Text.Length - p.Offset, Parameters.InitiatorMaxRecvDataSegmentLength);
        var last = p.Offset + n == p.Text.Length;
        var pdu = ControlPdu.Create(Opcode.TextResponse, last ? Bhs.FinalFlag : Bhs.Text.ContinueFlag, itt, p.Text.AsSpan(p.Offset, n));
        Bhs.PutTargetTransferTag(pdu.Header, last ? Bhs.ReservedTag : p.Ttt);
        p.Offset += n;
        if (last)
            pendingText = null;
        Sender.Enqueue(pdu);
    }

    /// <summary>SendTargets=All (discovery), =&lt;name&gt;, or empty (this session's target); only targets the initiator may use.</summary>
    private void SendTargets(IscsiSession session, string value, List<byte> reply)
    {
        IEnumerable<ScsiTarget> targets = value switch
        {
            "All" when session.Discovery => Fabric.Targets.All,
            "All" or "" => session.Target is null ? [] : [session.Target],
            _ => Fabric.Targets.Find(value) is { } t ? [t] : [],
        };
        foreach (var t in targets.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            if (!t.Access.Allows(session.InitiatorName))
                continue;
            TextKeys.Append(reply, "TargetName", t.Name);
            foreach (var address in Fabric.PortalAddresses(LocalEndPoint))
                TextKeys.Append(reply, "TargetAddress", $"{address},{IscsiFabric.PortalGroupTag}");
        }
    }

    // ---- Logout (RFC 7143 11.14) ----

    private async ValueTask OnLogoutAsync(IscsiSession session)
    {
        var h = header.AsSpan();
        var reason = Bhs.Logout.ReasonCode(h);
        var itt = Bhs.InitiatorTaskTag(h);
        var cid = Bhs.Logout.Cid(h);
        var immediate = Bhs.Immediate(h);
        var cmdSN = Bhs.CmdSN(h);
        await SkipSegmentAsync();
        if (!immediate && !session.AcceptCmdSN(cmdSN))
            return;
        byte response;
        var closeThis = false;
        Action? after = null;
        switch (reason)
        {
            case 0: // close the session
                await WaitIdleAsync(session, c => true);
                session.EndNexus(); // before the response: the initiator may log in again at once
                response = 0;
                closeThis = true;
                after = () => session.CloseAll("logout");
                break;
            case 1: // close one connection
                var target = cid == Cid ? this : session.FindConnection(cid);
                if (target is null)
                {
                    response = 1; // CID not found
                    break;
                }
                await WaitIdleAsync(session, c => c.Connection == target);
                response = 0;
                if (target == this)
                    closeThis = true;
                else
                    target.Close("logged out from another connection");
                break;
            case 2: // remove the connection for recovery: needs ErrorRecoveryLevel 2
                response = 2;
                break;
            default:
                Reject(RejectReason.InvalidPduField);
                return;
        }
        var pdu = ControlPdu.Create(Opcode.LogoutResponse, Bhs.FinalFlag, itt);
        Bhs.Logout.PutResponse(pdu.Header, response);
        Bhs.Logout.PutTime2Wait(pdu.Header, (ushort)session.Parameters.DefaultTime2Wait);
        Bhs.Logout.PutTime2Retain(pdu.Header, (ushort)session.Parameters.DefaultTime2Retain);
        pdu.CloseAfter = closeThis;
        pdu.AfterSend = after;
        Log.Information("iSCSI {Remote}: logout ({What}) of {Initiator}", RemoteEndPoint, reason == 0 ? "session" : "connection", session.InitiatorName);
        Sender.Enqueue(pdu);
    }

    /// <summary>Before a logout response: commands still waiting for data are dropped, those running are allowed to finish and answer.</summary>
    private static async Task WaitIdleAsync(IscsiSession session, Func<IscsiCommand, bool> match)
    {
        await session.AbortAsync(c => match(c) && c.State == CommandState.Receiving, coreAlso: false);
        await session.WaitIdleAsync(match, TimeSpan.FromSeconds(30));
    }

    // ---- Task Management (RFC 7143 11.5, SAM-5 7) ----

    private async ValueTask OnTaskManagementAsync(IscsiSession session)
    {
        var h = header.AsSpan();
        var function = Bhs.TaskManagement.Function(h);
        var itt = Bhs.InitiatorTaskTag(h);
        var referenced = Bhs.TaskManagement.ReferencedTaskTag(h);
        var immediate = Bhs.Immediate(h);
        var cmdSN = Bhs.CmdSN(h);
        var lunNumber = ScsiTarget.DecodeLun(Bhs.Lun(h));
        await SkipSegmentAsync();
        if (!immediate && !session.AcceptCmdSN(cmdSN))
            return;
        // The aborting happens now, in command order; the response waits for the aborted tasks to end.
        var outcome = StartTaskManagement(session, function, lunNumber, referenced);
        _ = FinishTaskManagementAsync(session, function, itt, outcome);
    }

    private (TaskManagementResponse Response, Task Done, ScsiLun? Lun) StartTaskManagement(IscsiSession session, TaskManagementFunction function, ulong lunNumber, uint referenced)
    {
        var target = session.Target!;
        var lun = target.Lookup(lunNumber);
        var nexus = session.Nexus!;
        switch (function)
        {
            case TaskManagementFunction.AbortTask:
            {
                var cmd = session.FindAbortable(referenced);
                if (cmd is null)
                    return (TaskManagementResponse.TaskDoesNotExist, Task.CompletedTask, null);
                return (TaskManagementResponse.FunctionComplete, session.AbortAsync(c => c == cmd, coreAlso: true), null);
            }
            case TaskManagementFunction.AbortTaskSet:
                if (lun is null)
                    return (TaskManagementResponse.LunDoesNotExist, Task.CompletedTask, null);
                return (TaskManagementResponse.FunctionComplete, session.AbortAsync(c => c.Task.Lun == lunNumber, coreAlso: true), lun);
            case TaskManagementFunction.ClearTaskSet:
            {
                if (lun is null)
                    return (TaskManagementResponse.LunDoesNotExist, Task.CompletedTask, null);
                var own = session.AbortAsync(c => c.Task.Lun == lunNumber, coreAlso: true);
                var others = new HashSet<ItNexus>();
                lun.AbortTasks(t =>
                {
                    if (t.Nexus != nexus)
                        others.Add(t.Nexus);
                    return true;
                });
                foreach (var other in others)
                    lun.UnitAttentions.Establish(other, Sense.CommandsClearedByAnotherInitiator);
                return (TaskManagementResponse.FunctionComplete, own, lun);
            }
            case TaskManagementFunction.LogicalUnitReset:
            {
                if (lun is null)
                    return (TaskManagementResponse.LunDoesNotExist, Task.CompletedTask, null);
                var own = session.AbortAsync(c => c.Task.Lun == lunNumber, coreAlso: false);
                lun.Reset();
                Log.Information("iSCSI {Remote}: LOGICAL UNIT RESET of LUN {Lun} by {Initiator}", RemoteEndPoint, lunNumber, session.InitiatorName);
                return (TaskManagementResponse.FunctionComplete, own, lun);
            }
            case TaskManagementFunction.TargetWarmReset or TaskManagementFunction.TargetColdReset:
            {
                var own = session.AbortAsync(_ => true, coreAlso: false);
                var luns = target.Luns;
                foreach (var (_, l) in luns)
                    l.Reset();
                Log.Information("iSCSI {Remote}: TARGET {Kind} RESET of {Target} by {Initiator}", RemoteEndPoint,
                    function == TaskManagementFunction.TargetColdReset ? "COLD" : "WARM", target.Name, session.InitiatorName);
                return (TaskManagementResponse.FunctionComplete, WaitAllAsync(session, own, luns), null);
            }
            case TaskManagementFunction.ClearAca:
                return (TaskManagementResponse.NotSupported, Task.CompletedTask, null); // NACA is not supported, so ACA never arises
            case TaskManagementFunction.TaskReassign:
                return (TaskManagementResponse.TaskAllegianceReassignmentNotSupported, Task.CompletedTask, null);
            default:
                return (TaskManagementResponse.Rejected, Task.CompletedTask, null);
        }
    }

    private async Task WaitAllAsync(IscsiSession session, Task own, IReadOnlyList<(int, ScsiLun)> luns)
    {
        await own;
        foreach (var (_, l) in luns)
            await Fabric.WaitAbortedAsync(l, session);
    }

    private async Task FinishTaskManagementAsync(IscsiSession session, TaskManagementFunction function, uint itt, (TaskManagementResponse Response, Task Done, ScsiLun? Lun) outcome)
    {
        try
        {
            await outcome.Done;
            if (outcome.Lun is not null)
                await Fabric.WaitAbortedAsync(outcome.Lun, session);
            var pdu = ControlPdu.Create(Opcode.TaskManagementResponse, Bhs.FinalFlag, itt);
            Bhs.TaskManagement.PutResponse(pdu.Header, outcome.Response);
            if (function == TaskManagementFunction.TargetColdReset && outcome.Response == TaskManagementResponse.FunctionComplete)
            {
                var target = session.Target!;
                pdu.AfterSend = () => Fabric.CloseSessionsOf(target, "target cold reset");
            }
            Sender.Enqueue(pdu);
        }
        catch (Exception e)
        {
            Log.Error(e, "iSCSI {Remote}: task management {Function} failed", RemoteEndPoint, function);
            Close("task management failed");
        }
    }
}
