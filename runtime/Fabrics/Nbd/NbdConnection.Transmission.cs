using HandlerRuntime.Buffers;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Fabrics.Nbd;

// Transmission (proto.md "Transmission"; fabrics-tcmu-nbd.md 3.3-3.7): the reader takes one
// request header at a time, checks it the way nbdkit does before anything is touched, reads
// a WRITE's payload (also when the WRITE is refused: the next header follows it), and hands
// the request to the SCSI core. Requests run concurrently and are answered as they finish.
internal sealed partial class NbdConnection
{
    private readonly byte[] requestHeader = new byte[NbdProtocol.RequestHeaderLength];

    /// <summary>Reads requests until NBD_CMD_DISC or the end of the stream; returns why it stopped.</summary>
    private async Task<string> TransmitAsync()
    {
        var export = Export!;
        var nonBlocking = (export.Lun.Capabilities & DeviceCapabilities.NonBlocking) != 0;
        var maxPayload = (long)export.BlockSizes(Options.MaxRequestBytes).Maximum;
        // A refused WRITE's payload is read and dropped; one far beyond any limit is not worth reading.
        var maxSkip = Math.Max(64L << 20, 2 * maxPayload);
        Sender = new NbdReplySender(stream, this, StructuredReplies);
        Sender.Start();
        receiver.ReadAhead = true;
        receiver.BeforeWait = Sender.FlushBatchAsync; // replies of a received batch leave before the reader waits for more
        var h = requestHeader;
        while (true)
        {
            await receiver.ReadExactAsync(h, CancellationToken.None);
            var magic = NbdProtocol.U32(h, NbdProtocol.RequestMagicAt);
            if (magic != NbdProtocol.RequestMagic)
                throw new NbdProtocolException($"a request starts with 0x{magic:x8}, not the request magic 0x{NbdProtocol.RequestMagic:x8}");
            var flags = (NbdCommandFlags)NbdProtocol.U16(h, NbdProtocol.RequestFlagsAt);
            var command = (NbdCommand)NbdProtocol.U16(h, NbdProtocol.RequestTypeAt);
            var cookie = NbdProtocol.U64(h, NbdProtocol.RequestCookieAt);
            var offset = NbdProtocol.U64(h, NbdProtocol.RequestOffsetAt);
            var length = NbdProtocol.U32(h, NbdProtocol.RequestLengthAt);
            if (command == NbdCommand.Disconnect)
                return "NBD_CMD_DISC";

            var error = Check(command, flags, offset, length, maxPayload);
            if (error == NbdError.None && !export.IsCurrent)
                error = NbdError.Shutdown; // the LUN was deleted or recreated: this connection's export is gone
            if (error == NbdError.None && shuttingDown)
                error = NbdError.Shutdown;
            if (error != NbdError.None)
            {
                if (command == NbdCommand.Write)
                {
                    if (length > maxSkip)
                        throw new NbdProtocolException($"a refused WRITE of {length} bytes is too large to read past");
                    await receiver.SkipAsync(length, CancellationToken.None);
                }
                if (error != NbdError.Shutdown && Log.IsEnabled(Serilog.Events.LogEventLevel.Debug))
                    Log.Debug("NBD {Remote}: {Command} at {Offset} length {Length} flags {Flags} refused with {Error}", RemoteText, command, offset, length, flags, NbdError.Name(error));
                await WaitForRoomAsync(0);
                var refused = Rent(0);
                Fill(refused, command, flags, cookie, offset, length);
                refused.Error = error;
                if (!Sender.Enqueue(refused))
                    Recycle(refused);
                continue;
            }

            long budget = command is NbdCommand.Read or NbdCommand.Write ? length : 0;
            await WaitForRoomAsync(budget);
            var r = Rent(budget);
            Fill(r, command, flags, cookie, offset, length);
            if (command == NbdCommand.Write)
            {
                var payload = BufferPool.Shared.Rent((int)length);
                r.Task.DataOutBuffer = payload;
                try
                {
                    await receiver.ReadExactAsync(payload.Memory, CancellationToken.None);
                }
                catch
                {
                    Recycle(r); // the client went away mid-payload: nothing was started
                    throw;
                }
            }
            // On a network thread (inline socket completions) only READ and WRITE to a device that
            // never waits run here; everything else (flush, zeroing, disk I/O) goes to the pool.
            if (NetworkThreads.OnThreadPool || (nonBlocking && command is NbdCommand.Read or NbdCommand.Write))
            {
                using (Sender.EnterReader())
                    r.Start();
            }
            else
            {
                ThreadPool.UnsafeQueueUserWorkItem(r, preferLocal: false);
            }
        }
    }

    private static void Fill(NbdRequest r, NbdCommand command, NbdCommandFlags flags, ulong cookie, ulong offset, uint length)
    {
        r.Command = command;
        r.Flags = flags;
        r.Cookie = cookie;
        r.Offset = offset;
        r.Length = length;
    }

    /// <summary>
    /// nbdkit's checks (server/protocol.c validate_request), in its order, before anything is
    /// done: write access, range (ENOSPC for writes, EINVAL otherwise), flags only where they
    /// belong and were advertised, size limits, commands that were not advertised; and
    /// alignment to the minimum block size this server advertised.
    /// </summary>
    private uint Check(NbdCommand command, NbdCommandFlags flags, ulong offset, uint length, long maxPayload)
    {
        var f = TransmissionFlags;
        var writes = command is NbdCommand.Write or NbdCommand.Trim or NbdCommand.WriteZeroes;
        if (writes && (f & NbdTransmissionFlags.ReadOnly) != 0)
            return NbdError.Perm;
        switch (command)
        {
            case NbdCommand.Read or NbdCommand.Write or NbdCommand.Trim or NbdCommand.WriteZeroes or NbdCommand.Cache or NbdCommand.BlockStatus:
                if (length == 0 || offset > (ulong)Size || length > (ulong)Size - offset)
                    return command is NbdCommand.Write or NbdCommand.WriteZeroes ? NbdError.NoSpace : NbdError.Invalid;
                break;
            case NbdCommand.Flush:
                if (offset != 0 || length != 0)
                    return NbdError.Invalid;
                break;
            default:
                return NbdError.Invalid; // unknown command
        }
        if ((flags & ~NbdCommandFlags.Known) != 0)
            return NbdError.Invalid;
        if ((flags & (NbdCommandFlags.NoHole | NbdCommandFlags.FastZero)) != 0 && command != NbdCommand.WriteZeroes)
            return NbdError.Invalid;
        if ((flags & NbdCommandFlags.DontFragment) != 0 && (command != NbdCommand.Read || !StructuredReplies))
            return NbdError.Invalid;
        if ((flags & NbdCommandFlags.RequestOne) != 0 && command != NbdCommand.BlockStatus)
            return NbdError.Invalid;
        if ((flags & NbdCommandFlags.Fua) != 0 && (f & NbdTransmissionFlags.SendFua) == 0)
            return NbdError.Invalid;
        if (command is NbdCommand.Read or NbdCommand.Write && length > maxPayload)
            return NbdError.NoMemory; // over the advertised maximum payload (nbdkit: ENOMEM over its 64 MiB)
        var advertised = command switch
        {
            NbdCommand.Flush => (f & NbdTransmissionFlags.SendFlush) != 0,
            NbdCommand.Trim => (f & NbdTransmissionFlags.SendTrim) != 0,
            NbdCommand.WriteZeroes => (f & NbdTransmissionFlags.SendWriteZeroes) != 0,
            NbdCommand.Cache => (f & NbdTransmissionFlags.SendCache) != 0,
            NbdCommand.BlockStatus => StructuredReplies && BaseAllocation,
            _ => true,
        };
        if (!advertised)
            return NbdError.Invalid;
        // Block-aligned only: half a block written, or read, is refused, never half-applied.
        var bs = (uint)Export!.BlockSize;
        if (command != NbdCommand.Flush && (offset % bs != 0 || length % bs != 0))
            return NbdError.Invalid;
        return NbdError.None;
    }
}
