using System.Runtime.CompilerServices;
using HandlerRuntime.Buffers;
using HandlerRuntime.Fabrics.Iscsi.Protocol;
using HandlerRuntime.Fabrics.Iscsi.Sessions;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Fabrics.Iscsi.Connections;

// Full feature phase (RFC 7143 4.2): SCSI commands and their data, NOP, Text, Logout,
// task management. Runs on the connection's reader; nothing here blocks on the SCSI core.
internal sealed partial class IscsiConnection
{
    /// <summary>Largest data-out one command may make the target buffer (COMPARE AND WRITE carries twice a transfer).</summary>
    private const int MaxCommandDataBytes = 2 * ScsiLun.MaxTransferBytes;
    /// <summary>Queued outbound PDUs beyond which the reader stops taking new ones, so an initiator that does not read cannot grow memory.</summary>
    private const int MaxSenderBacklog = 4096;

    private async Task FullFeatureAsync()
    {
        var session = Session!;
        while (!IsClosed)
        {
            await ReadHeaderAsync(digests: true);
            pingTtt = Bhs.ReservedTag;
            var opcode = Bhs.Opcode(header);
            if (dataLength > Parameters.TargetMaxRecvDataSegmentLength)
                throw new ProtocolException(RejectReason.ProtocolError, $"a {opcode} PDU carries {dataLength} bytes, more than MaxRecvDataSegmentLength {Parameters.TargetMaxRecvDataSegmentLength}");
            if (session.Discovery && opcode is Opcode.ScsiCommand or Opcode.DataOut or Opcode.TaskManagementRequest)
            {
                Reject(RejectReason.ProtocolError);
                await SkipSegmentAsync();
                continue;
            }
            if (opcode is not (Opcode.ScsiCommand or Opcode.DataOut))
                await Sender.FlushBatchAsync(); // what the reader left queued leaves before anything here may wait
            switch (opcode)
            {
                case Opcode.ScsiCommand:
                    await OnScsiCommandAsync(session);
                    break;
                case Opcode.DataOut:
                    await OnDataOutAsync(session);
                    break;
                case Opcode.NopOut:
                    await OnNopOutAsync(session);
                    break;
                case Opcode.TaskManagementRequest:
                    await OnTaskManagementAsync(session);
                    break;
                case Opcode.TextRequest:
                    await OnTextAsync(session);
                    break;
                case Opcode.LogoutRequest:
                    await OnLogoutAsync(session);
                    break;
                case Opcode.Snack:
                    // ErrorRecoveryLevel 0: no SNACK support.
                    Reject(RejectReason.ProtocolError);
                    await SkipSegmentAsync();
                    break;
                case Opcode.LoginRequest:
                    Reject(RejectReason.ProtocolError);
                    await SkipSegmentAsync();
                    break;
                default:
                    Reject(RejectReason.CommandNotSupported);
                    await SkipSegmentAsync();
                    break;
            }
            if (Sender.Backlog > MaxSenderBacklog)
            {
                await Sender.FlushBatchAsync();
                await Sender.WaitForRoomAsync(MaxSenderBacklog);
            }
        }
    }

    // ---- SCSI Command (RFC 7143 11.3) ----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask OnScsiCommandAsync(IscsiSession session)
    {
        var p = session.Parameters;
        var h = header.AsSpan();
        var immediate = Bhs.Immediate(h);
        var final = Bhs.Final(h);
        var read = Bhs.ScsiCommand.Read(h);
        var write = Bhs.ScsiCommand.Write(h);
        var edtl = Bhs.ScsiCommand.ExpectedDataTransferLength(h);
        string? invalid = null;
        if (edtl > int.MaxValue)
            invalid = "Expected Data Transfer Length too large";
        else if (edtl > 0 && !read && !write)
            invalid = "data expected but neither R nor W set";
        else if (dataLength > 0 && !write)
            invalid = "immediate data on a command that is not a write";
        else if (dataLength > 0 && !p.ImmediateData)
            invalid = "immediate data, but ImmediateData=No was negotiated";
        else if (dataLength > edtl || dataLength > p.FirstBurstLength)
            invalid = "immediate data beyond EDTL or FirstBurstLength";
        else if (!final && (!write || p.InitialR2T))
            invalid = "F bit clear, but no unsolicited Data-Out may follow";
        var cdbExtra = default(ReadOnlySpan<byte>);
        uint bidiReadLength = 0;
        // TotalAHSLength counts 4-byte words, so at least a word is left wherever an AHS starts.
        for (var ahs = h.Slice(Bhs.Length, ahsLength); invalid is null && !ahs.IsEmpty;)
        {
            var len = Bhs.Ahs.Length(ahs);
            var type = Bhs.Ahs.Type(ahs);
            if (Bhs.Ahs.Size(len) > ahs.Length)
                invalid = "AHS overruns its length";
            else if (type == Bhs.Ahs.ExtendedCdbType && len > 1)
                cdbExtra = Bhs.Ahs.ExtendedCdb(ahs, len);
            else if (type == Bhs.Ahs.BidirectionalReadLengthType && len == Bhs.Ahs.BidirectionalReadAhsLength)
                bidiReadLength = Bhs.Ahs.BidirectionalReadLength(ahs);
            else
                invalid = $"unknown AHS type {type}";
            ahs = ahs[Math.Min(Bhs.Ahs.PaddedSize(len), ahs.Length)..];
        }
        if (invalid is not null)
        {
            Log.Warning("iSCSI {Remote}: SCSI Command rejected: {Reason}", RemoteEndPoint, invalid);
            Reject(RejectReason.InvalidPduField);
            await SkipSegmentAsync();
            return;
        }

        var cmd = session.Rent();
        var task = cmd.Task;
        cmd.Connection = this;
        cmd.Itt = Bhs.InitiatorTaskTag(h);
        cmd.CmdSN = Bhs.CmdSN(h);
        cmd.Immediate = immediate;
        cmd.LunField = Bhs.LunField(h);
        cmd.Read = read;
        cmd.Write = write;
        cmd.Edtl = (int)edtl;
        var cdbStart = Bhs.ScsiCommand.Cdb(h);
        Span<byte> cdb = stackalloc byte[cdbStart.Length + cdbExtra.Length];
        cdbStart.CopyTo(cdb);
        cdbExtra.CopyTo(cdb[cdbStart.Length..]);
        task.Nexus = session.Nexus!;
        task.Lun = ScsiTarget.DecodeLun(Bhs.Lun(h));
        task.Tag = cmd.Itt;
        task.Attribute = Bhs.ScsiCommand.Attribute(h) switch
        {
            2 => TaskAttribute.Ordered,
            3 => TaskAttribute.HeadOfQueue,
            _ => TaskAttribute.Simple, // untagged, simple; ACA is not supported (NACA=0)
        };
        task.Direction = (read ? DataDirection.In : 0) | (write ? DataDirection.Out : 0);
        task.ExpectedDataInLength = read ? (int)Math.Min(int.MaxValue, write ? bidiReadLength : edtl) : 0;
        task.ExpectedDataOutLength = write ? (int)Math.Min(int.MaxValue, edtl) : 0;

        if (write)
        {
            var lun = session.Target!.Lookup(task.Lun);
            var spdtl = lun is null ? 0 : TransferLength.DataOutBytes(cdb, lun.BlockSize);
            cmd.Spdtl = spdtl ?? -1;
            // Overflow: write what the initiator sends, not what the CDB asked (the residual tells it).
            if (lun is not null && spdtl > edtl)
                TransferLength.TryTruncateWrite(cdb, lun.BlockSize, edtl);
            var needed = spdtl is { } known ? (int)Math.Min(edtl, known) : (int)edtl;
            if (needed > MaxCommandDataBytes)
                needed = 0; // the core refuses a transfer this large; gather nothing
            cmd.Needed = needed;
            cmd.DataOut = needed > 0 ? BufferPool.Shared.Rent(needed) : null;
            cmd.UnsolicitedDone = final;
            cmd.UnsolicitedEnd = final ? dataLength : (int)Math.Min(p.FirstBurstLength, edtl);
            cmd.UnsolicitedNext = dataLength;
            cmd.NextR2TOffset = Math.Min(cmd.UnsolicitedEnd, needed);
        }
        else
        {
            cmd.UnsolicitedDone = true;
        }
        task.SetCdb(cdb);
        cmd.Command = CommandTable.Find(cdb);

        cmd.ReaderBusy = true;
        bool admitted;
        try
        {
            admitted = session.Admit(cmd);
        }
        catch (ProtocolException e)
        {
            Log.Warning("iSCSI {Remote}: {Reason}", RemoteEndPoint, e.Message);
            session.Recycle(cmd);
            Reject(e.Reason);
            await SkipSegmentAsync();
            return;
        }
        if (!admitted)
        {
            // Outside the CmdSN window or a duplicate: ignored, as RFC 7143 4.2.2.1 requires.
            session.Recycle(cmd);
            await SkipSegmentAsync();
            return;
        }
        try
        {
            var keep = Math.Min(dataLength, cmd.Needed);
            await ReadSegmentAsync(keep > 0 ? cmd.DataOut!.Array.AsMemory(0, keep) : default);
            using (Sender.EnterReader())
                IssueR2Ts(cmd);
        }
        finally
        {
            // Commands that complete right here (ram, cached reads) queue their responses for
            // this reader, which sends the batch in one go before it waits for input.
            using (Sender.EnterReader())
                if (session.EndRead(cmd) && cmd.DataComplete)
                    session.Pump();
        }
    }

    /// <summary>Requests the data still missing, up to MaxOutstandingR2T bursts of MaxBurstLength at a time.</summary>
    private void IssueR2Ts(IscsiCommand cmd)
    {
        var p = cmd.Session.Parameters;
        while (cmd.OutstandingR2Ts < p.MaxOutstandingR2T)
        {
            int start, end;
            var gap = cmd.GapStart < cmd.GapEnd;
            if (gap)
                (start, end) = (cmd.GapStart, cmd.GapEnd);
            else if (cmd.NextR2TOffset < cmd.Needed)
                (start, end) = (cmd.NextR2TOffset, cmd.Needed);
            else
                return;
            var length = Math.Min(p.MaxBurstLength, end - start);
            var slot = Array.FindIndex(cmd.R2Ts, r => !r.Active);
            var ttt = cmd.Session.NextTtt();
            cmd.R2Ts[slot] = new R2TState { Active = true, Ttt = ttt, Offset = start, Length = length, Next = start, NextDataSN = 0 };
            if (gap)
                cmd.GapStart += length;
            else
                cmd.NextR2TOffset += length;
            cmd.OutstandingR2Ts++;
            Sender.EnqueueR2T(new R2TRequest(cmd.Itt, cmd.LunField, ttt, cmd.NextR2TSN++, start, length));
        }
    }

    // ---- SCSI Data-Out (RFC 7143 11.7) ----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask OnDataOutAsync(IscsiSession session)
    {
        var h = header.AsSpan();
        var final = Bhs.Final(h);
        var itt = Bhs.InitiatorTaskTag(h);
        var ttt = Bhs.TargetTransferTag(h);
        var dataSN = Bhs.DataOut.DataSN(h);
        var offset = Bhs.DataOut.BufferOffset(h);
        var cmd = session.BeginDataOut(itt, this);
        if (cmd is null)
        {
            // Data for a task that was aborted, failed or never admitted: dropped (RFC 7143 4.2.3.3).
            await SkipSegmentAsync();
            return;
        }
        (SenseData Sense, string Why)? fault = null;
        try
        {
            var end = (long)offset + dataLength;
            if (ttt == Bhs.ReservedTag)
            {
                if (cmd.UnsolicitedDone)
                    fault = (DataPhaseError, $"unsolicited Data-Out for ITT 0x{itt:x8} after its last one");
                else if (dataSN != cmd.UnsolicitedDataSN)
                    fault = (DataPhaseError, $"Data-Out DataSN {dataSN}, expected {cmd.UnsolicitedDataSN}");
                else if (offset != cmd.UnsolicitedNext || end > cmd.UnsolicitedEnd)
                    fault = (DataOffsetError, $"unsolicited Data-Out at offset {offset}+{dataLength} out of order or beyond FirstBurstLength");
                if (fault is not null)
                {
                    await SkipSegmentAsync();
                    return;
                }
                await ReadDataOutAsync(cmd, (int)offset);
                cmd.UnsolicitedDataSN++;
                cmd.UnsolicitedNext = (int)end;
                if (final)
                {
                    cmd.UnsolicitedDone = true;
                    // The initiator sent less unsolicited data than assumed: ask for the rest.
                    if (cmd.UnsolicitedNext < cmd.UnsolicitedEnd && cmd.UnsolicitedNext < cmd.Needed)
                    {
                        cmd.GapStart = cmd.UnsolicitedNext;
                        cmd.GapEnd = Math.Min(cmd.UnsolicitedEnd, cmd.Needed);
                    }
                }
            }
            else
            {
                var r2t = cmd.FindR2T(ttt, out var index);
                if (r2t is null)
                    fault = (InvalidTransferTag, $"Data-Out with unknown Target Transfer Tag 0x{ttt:x8}");
                else if (dataSN != r2t.Value.NextDataSN)
                    fault = (DataPhaseError, $"Data-Out DataSN {dataSN}, expected {r2t.Value.NextDataSN}");
                else if (offset != r2t.Value.Next || end > r2t.Value.Offset + r2t.Value.Length)
                    fault = (DataOffsetError, $"Data-Out at offset {offset}+{dataLength} outside its R2T ({r2t.Value.Offset}+{r2t.Value.Length}) or out of order");
                if (fault is not null)
                {
                    await SkipSegmentAsync();
                    return;
                }
                await ReadDataOutAsync(cmd, (int)offset);
                ref var slot = ref cmd.R2Ts[index];
                slot.Next = (int)end;
                slot.NextDataSN++;
                if (final)
                {
                    if (slot.Next != slot.Offset + slot.Length)
                    {
                        fault = (DataPhaseError, $"Data-Out sequence for R2T 0x{ttt:x8} ended {slot.Offset + slot.Length - slot.Next} bytes short");
                        return;
                    }
                    slot.Active = false;
                    cmd.OutstandingR2Ts--;
                }
            }
            using (Sender.EnterReader())
                IssueR2Ts(cmd);
        }
        finally
        {
            // ErrorRecoveryLevel 0 cannot recover a data sequence: the command ends with
            // ABORTED COMMAND (SPC-4 4Bh: data phase errors) and the connection lives on.
            if (fault is { } f)
                Log.Warning("iSCSI {Remote}: {Reason}; ITT 0x{Itt:x8} ends with ABORTED COMMAND", RemoteEndPoint, f.Why, itt);
            using var reader = Sender.EnterReader();
            if (session.EndRead(cmd, fault?.Sense) && cmd.DataComplete)
                session.Pump();
        }
    }

    private static readonly SenseData DataPhaseError = new(SenseKey.AbortedCommand, 0x4B, 0x00);
    private static readonly SenseData InvalidTransferTag = new(SenseKey.AbortedCommand, 0x4B, 0x01);
    private static readonly SenseData DataOffsetError = new(SenseKey.AbortedCommand, 0x4B, 0x05);

    /// <summary>Reads a data segment into the command's buffer at <paramref name="offset"/>; bytes past what the command needs are dropped.</summary>
    private ValueTask ReadDataOutAsync(IscsiCommand cmd, int offset)
    {
        var keep = Math.Clamp(cmd.Needed - offset, 0, dataLength);
        return ReadSegmentAsync(keep > 0 ? cmd.DataOut!.Array.AsMemory(offset, keep) : default);
    }

    // ---- NOP-Out (RFC 7143 11.18) ----

    private async ValueTask OnNopOutAsync(IscsiSession session)
    {
        var h = header.AsSpan();
        var itt = Bhs.InitiatorTaskTag(h);
        var immediate = Bhs.Immediate(h);
        var cmdSN = Bhs.CmdSN(h);
        var lun = Bhs.LunField(h);
        if (itt == Bhs.ReservedTag)
        {
            // The answer to our NOP-In ping (or a ping that wants no answer).
            await SkipSegmentAsync();
            return;
        }
        if (!immediate && !session.AcceptCmdSN(cmdSN))
        {
            await SkipSegmentAsync();
            return;
        }
        var data = await ReadSegmentPooledAsync();
        var pdu = ControlPdu.Create(Opcode.NopIn, Bhs.FinalFlag, itt);
        Bhs.PutLunField(pdu.Header, lun);
        Bhs.PutTargetTransferTag(pdu.Header, Bhs.ReservedTag);
        if (data is not null)
        {
            pdu.Data = data;
            pdu.DataLength = Math.Min(data.Length, Parameters.InitiatorMaxRecvDataSegmentLength);
        }
        Sender.Enqueue(pdu);
    }
}
