using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using HandlerRuntime.Buffers;
using HandlerRuntime.Fabrics.Iscsi.Login;
using HandlerRuntime.Fabrics.Iscsi.Protocol;
using HandlerRuntime.Fabrics.Iscsi.Sessions;

namespace HandlerRuntime.Fabrics.Iscsi.Connections;

/// <summary>An R2T to send (RFC 7143 11.8): which command, which tag, which part of its data.</summary>
internal readonly record struct R2TRequest(uint Itt, ulong Lun, uint Ttt, uint R2TSN, int Offset, int Length);

/// <summary>
/// Turns PDUs into bytes on a connection's socket: the BHS and its header digest, the data
/// segment with its padding and data digest. Headers and small data are gathered in one
/// pinned buffer, so PDUs written together leave in one send; large read data goes to the
/// socket straight from the task's pooled buffer. StatSN is assigned here, in the order PDUs
/// are written.
/// <para>
/// One thread at a time: the <see cref="PduSender"/> lets only the thread that drains its
/// queue write. Digests and segment limits are read from the connection's and session's
/// negotiated parameters at each PDU, not copied: a Text negotiation may change
/// MaxRecvDataSegmentLength in full feature phase, and login PDUs, which never carry
/// digests, say so themselves (<see cref="ControlPdu.NoDigests"/>).
/// </para>
/// </summary>
internal sealed class PduEncoder(Socket socket, ConnectionParameters parameters, uint initialStatSN) : IDisposable
{
    public const int BufferSize = 256 * 1024;
    private const int DigestLength = 4;
    private static readonly byte[] Zeros = new byte[4];

    private readonly BufferPool.PooledBuffer buffer = BufferPool.Shared.Rent(BufferSize);
    private uint statSN = initialStatSN;
    private int used;

    /// <summary>Sends what is gathered in the buffer.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask FlushAsync()
    {
        var sent = 0;
        while (sent < used)
            sent += await socket.SendAsync(buffer.Array.AsMemory(sent, used - sent), SocketFlags.None);
        used = 0;
    }

    /// <summary>
    /// A login, text, NOP-In, task management, logout or reject PDU: its prepared header with
    /// StatSN and, when given, the command window filled in, then its data.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteControlAsync(ControlPdu pdu, CmdSNWindow? window)
    {
        await EnsureSpaceAsync(Bhs.Length + DigestLength);
        var h = Header();
        pdu.Header.CopyTo(h);
        Bhs.PutDataSegmentLength(h, pdu.DataLength);
        if (pdu.StatSN != StatSNUse.None)
            Bhs.PutStatSN(h, pdu.StatSN == StatSNUse.Advance ? statSN++ : statSN);
        if (window is { } w)
            Bhs.PutWindow(h, w);
        CommitHeader(!pdu.NoDigests && parameters.HeaderDigest);
        if (pdu.Data is not null)
            await WriteDataAsync(pdu.Data.Memory[..pdu.DataLength], !pdu.NoDigests && parameters.DataDigest);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteR2TAsync(R2TRequest r2t, CmdSNWindow window)
    {
        await EnsureSpaceAsync(Bhs.Length + DigestLength);
        var h = Header();
        Bhs.PutOpcode(h, Opcode.ReadyToTransfer);
        Bhs.PutFlags(h, Bhs.FinalFlag);
        Bhs.PutLunField(h, r2t.Lun);
        Bhs.PutInitiatorTaskTag(h, r2t.Itt);
        Bhs.PutTargetTransferTag(h, r2t.Ttt);
        Bhs.PutStatSN(h, statSN); // the next StatSN, not consumed
        Bhs.PutWindow(h, window);
        Bhs.R2T.PutR2TSN(h, r2t.R2TSN);
        Bhs.R2T.PutBufferOffset(h, (uint)r2t.Offset);
        Bhs.R2T.PutDesiredDataTransferLength(h, (uint)r2t.Length);
        CommitHeader(parameters.HeaderDigest);
    }

    /// <summary>
    /// A command's read data and status: Data-In PDUs cut at the initiator's
    /// MaxRecvDataSegmentLength with F at each MaxBurstLength, the status in the last one when
    /// there is no sense data (RFC 7143 11.7.4), else a SCSI Response after them. Residuals
    /// are <see cref="Residual.Of"/>'s. The window is the one the session took when the command
    /// left it (<see cref="IscsiCommand.Window"/>).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteResponseAsync(IscsiCommand cmd)
    {
        var task = cmd.Task;
        var produced = task.DataInBuffer is null ? 0 : task.DataInLength;
        var expectedIn = cmd.Read ? task.ExpectedDataInLength : 0;
        var send = Math.Min(produced, expectedIn);
        var residual = Residual.Of(cmd.Read, cmd.Write, produced, expectedIn, cmd.Spdtl, cmd.Edtl);
        // A Data-In has no Bidirectional Read Residual Count: a bidirectional command's status
        // always goes in a SCSI Response.
        var statusInData = send > 0 && task.SenseLength == 0 && !(cmd.Read && cmd.Write);
        var window = cmd.Window;
        var maxBurst = cmd.Session.Parameters.MaxBurstLength;
        var offset = 0;
        var burstLeft = maxBurst;
        while (offset < send)
        {
            var n = Math.Min(Math.Min(send - offset, parameters.InitiatorMaxRecvDataSegmentLength), burstLeft);
            var last = offset + n == send;
            burstLeft -= n;
            await EnsureSpaceAsync(Bhs.Length + DigestLength);
            var h = Header();
            Bhs.PutOpcode(h, Opcode.DataIn);
            var flags = last || burstLeft == 0 ? Bhs.FinalFlag : (byte)0; // F ends each burst (Data-In sequence)
            Bhs.PutDataSegmentLength(h, n);
            Bhs.PutLunField(h, cmd.LunField);
            Bhs.PutInitiatorTaskTag(h, cmd.Itt);
            Bhs.PutTargetTransferTag(h, Bhs.ReservedTag);
            if (last && statusInData)
            {
                flags |= (byte)(Bhs.DataIn.StatusFlag | (byte)residual.Flags);
                Bhs.DataIn.PutStatus(h, (byte)task.Status);
                Bhs.PutStatSN(h, statSN++);
                Bhs.DataIn.PutResidualCount(h, residual.Count);
            }
            Bhs.PutFlags(h, flags);
            Bhs.PutWindow(h, window);
            Bhs.DataIn.PutDataSN(h, cmd.DataInPdus++);
            Bhs.DataIn.PutBufferOffset(h, (uint)offset);
            CommitHeader(parameters.HeaderDigest);
            await WriteDataAsync(task.DataInBuffer!.Memory.Slice(offset, n), parameters.DataDigest);
            offset += n;
            if (burstLeft == 0)
                burstLeft = maxBurst;
        }
        if (statusInData)
            return;

        var senseLength = task.SenseLength;
        var dataLength = senseLength == 0 ? 0 : Bhs.ScsiResponse.SenseLengthSize + senseLength;
        await EnsureSpaceAsync(Bhs.Length + DigestLength);
        var r = Header();
        Bhs.PutOpcode(r, Opcode.ScsiResponse);
        Bhs.PutFlags(r, (byte)(Bhs.FinalFlag | (byte)residual.Flags));
        Bhs.ScsiResponse.PutResponse(r, Bhs.ScsiResponse.CommandCompleted);
        Bhs.ScsiResponse.PutStatus(r, (byte)task.Status);
        Bhs.PutDataSegmentLength(r, dataLength);
        Bhs.PutInitiatorTaskTag(r, cmd.Itt);
        Bhs.PutStatSN(r, statSN++);
        Bhs.PutWindow(r, window);
        Bhs.ScsiResponse.PutExpDataSN(r, cmd.DataInPdus + cmd.NextR2TSN); // Data-In and R2T PDUs sent for it
        Bhs.ScsiResponse.PutBidirectionalReadResidualCount(r, residual.BidirectionalReadCount);
        Bhs.ScsiResponse.PutResidualCount(r, residual.Count);
        CommitHeader(parameters.HeaderDigest);
        if (dataLength == 0)
            return;
        // SenseLength then the sense data, gathered in the buffer.
        var digest = parameters.DataDigest;
        var padded = dataLength + Bhs.Padding(dataLength);
        await EnsureSpaceAsync(padded + (digest ? DigestLength : 0));
        var d = buffer.Array.AsSpan(used, padded);
        d.Clear();
        Bhs.ScsiResponse.PutSenseLength(d, (ushort)senseLength);
        task.SenseBytes.CopyTo(d[Bhs.ScsiResponse.SenseLengthSize..]);
        used += padded;
        if (digest)
            PutDigest(Crc32C.Compute(d));
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask EnsureSpaceAsync(int bytes)
    {
        if (BufferSize - used < bytes)
            await FlushAsync();
    }

    /// <summary>A zeroed 48-byte header at the end of the buffer (space was ensured).</summary>
    private Span<byte> Header()
    {
        var h = buffer.Array.AsSpan(used, Bhs.Length);
        h.Clear();
        return h;
    }

    /// <summary>Commits the header written by <see cref="Header"/>, with its digest when <paramref name="digest"/>.</summary>
    private void CommitHeader(bool digest)
    {
        var crc = digest ? Crc32C.Compute(buffer.Array.AsSpan(used, Bhs.Length)) : 0;
        used += Bhs.Length;
        if (digest)
            PutDigest(crc);
    }

    private void PutDigest(uint crc)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(buffer.Array.AsSpan(used), crc); // least significant byte first (RFC 7143 13.1)
        used += DigestLength;
    }

    /// <summary>A data segment, its padding and, when <paramref name="digest"/>, its data digest.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteDataAsync(ReadOnlyMemory<byte> data, bool digest)
    {
        if (data.IsEmpty)
            return;
        var pad = Bhs.Padding(data.Length);
        var tail = pad + (digest ? DigestLength : 0);
        if (data.Length + tail <= BufferSize - used || data.Length + tail <= BufferSize / 4)
        {
            await EnsureSpaceAsync(data.Length + tail);
            data.Span.CopyTo(buffer.Array.AsSpan(used));
            used += data.Length;
        }
        else
        {
            // Large data: send what is gathered, then the data from where it lies.
            await FlushAsync();
            var sent = 0;
            while (sent < data.Length)
                sent += await socket.SendAsync(data[sent..], SocketFlags.None);
        }
        await EnsureSpaceAsync(tail);
        buffer.Array.AsSpan(used, pad).Clear();
        used += pad;
        if (digest)
            PutDigest(~Crc32C.Append(Crc32C.Append(~0u, data.Span), Zeros.AsSpan(0, pad)));
    }

    public void Dispose() => buffer.Dispose();
}
