using System.Runtime.CompilerServices;
using HandlerRuntime.Buffers;
using HandlerRuntime.Scsi;
using HandlerRuntime.Scsi.Commands;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Fabrics.Nbd;

/// <summary>
/// One NBD request on its way through the SCSI core: each NBD command becomes one or more
/// SCSI commands on a pooled <see cref="ScsiTask"/> of the connection's I_T nexus, so ALUA,
/// write protection, sanitize, reservations held by iSCSI initiators and every other LU rule
/// apply to NBD as to iSCSI:
/// <list type="bullet">
/// <item>READ: READ(16); WRITE: WRITE(16), FUA bit from NBD's FUA.</item>
/// <item>FLUSH: SYNCHRONIZE CACHE(16) over the whole LU.</item>
/// <item>TRIM: UNMAP (one descriptor per 1 Mi blocks).</item>
/// <item>WRITE_ZEROES: WRITE SAME(16) with no data-out (NDOB), with UNMAP only when NO_HOLE is
/// clear and unmapped blocks read as zeroes; in 1 GiB pieces (the LU's WRITE SAME limit).</item>
/// <item>CACHE: PRE-FETCH(16); BLOCK_STATUS: GET LBA STATUS, deallocated extents as holes.</item>
/// <item>FUA on TRIM or WRITE_ZEROES: SYNCHRONIZE CACHE(16) of the range afterwards.</item>
/// </list>
/// A unit attention (the nexus's first command, CAPACITY DATA HAS CHANGED after a resize) is
/// not an NBD error: it is consumed and the command is issued again. Objects are pooled per
/// connection and reused; a request in the steady state allocates nothing.
/// </summary>
internal sealed class NbdRequest : IThreadPoolWorkItem
{
    /// <summary>Unit attentions consumed before a command is given up (a nexus queues at most 8).</summary>
    private const int MaxUnitAttentionRetries = 16;
    /// <summary>GET LBA STATUS descriptors asked for per command.</summary>
    private const int DescriptorsPerQuery = 128;
    /// <summary>Extents one BLOCK_STATUS reply carries at most; the client asks again from where it ended.</summary>
    public const int MaxExtents = 1024;
    /// <summary>READ data of at least this many bytes is scanned for zero runs sent as holes.</summary>
    public const int HoleScanMinimum = 128 * 1024;
    /// <summary>The unit of that scan: a run of zero granules becomes one OFFSET_HOLE chunk.</summary>
    public const int HoleGranule = 64 * 1024;
    /// <summary>Chunks (data and hole runs) one READ reply is cut into at most.</summary>
    public const int MaxReadRuns = 32;

    private readonly Action onExecuted;
    private ConfiguredValueTaskAwaitable.ConfiguredValueTaskAwaiter pending;
    private Step step;
    private int retries;
    private long nextByte;  // WRITE_ZEROES and BLOCK_STATUS: where the next SCSI command starts
    private long endByte;

    public NbdRequest(NbdConnection connection)
    {
        Connection = connection;
        onExecuted = OnExecuted;
    }

    public NbdConnection Connection { get; }

    public ScsiTask Task { get; } = new();

    public NbdCommand Command;
    public NbdCommandFlags Flags;
    public ulong Cookie;
    public ulong Offset;
    public uint Length;

    /// <summary>The NBD error of the reply (0: success).</summary>
    public uint Error;

    /// <summary>Bytes this request holds against the connection's in-flight budget.</summary>
    public long BudgetBytes;

    /// <summary>BLOCK_STATUS: the extents found, (u32 length, u32 flags) each, big-endian, ready for the reply.</summary>
    public BufferPool.PooledBuffer? Extents;
    public int ExtentCount;

    /// <summary>READ with structured replies: the data cut into data and hole runs (byte offsets into the data; negative length = hole).</summary>
    public readonly (int Start, int Length)[] Runs = new (int, int)[MaxReadRuns];
    public int RunCount;

    private NbdExport Export => Connection.Export!;

    private bool Fua => (Flags & NbdCommandFlags.Fua) != 0;

    /// <summary>Runs the request in the SCSI core; the reply is queued on the connection when it is done.</summary>
    public void Start()
    {
        var export = Export;
        Task.Nexus = Connection.Nexus!;
        Task.Lun = (ulong)export.Number;
        Task.Attribute = TaskAttribute.Simple;
        var bs = export.BlockSize;
        var lba = Offset / (ulong)bs;
        var blocks = Length / (uint)bs;
        Span<byte> cdb = stackalloc byte[16];
        switch (Command)
        {
            case NbdCommand.Read:
                step = Step.Single;
                Cdb16(cdb, 0x88, 0, lba, blocks);
                Task.Direction = DataDirection.In;
                Task.ExpectedDataInLength = (int)Length;
                break;
            case NbdCommand.Write:
                step = Step.Single;
                Cdb16(cdb, 0x8A, Fua ? (byte)0x08 : (byte)0, lba, blocks); // FUA
                Task.Direction = DataDirection.Out;
                Task.ExpectedDataOutLength = (int)Length;
                Task.DataOutLength = (int)Length;
                break;
            case NbdCommand.Flush:
                step = Step.Single;
                Cdb16(cdb, 0x91, 0, 0, 0); // SYNCHRONIZE CACHE(16): zero blocks = to the end of the LU
                break;
            case NbdCommand.Cache:
                step = Step.Single;
                Cdb16(cdb, 0x90, 0, lba, blocks); // PRE-FETCH(16)
                break;
            case NbdCommand.Trim:
                step = Fua ? Step.ThenSync : Step.Single;
                Unmap(cdb[..10], lba, blocks);
                cdb = cdb[..10];
                break;
            case NbdCommand.WriteZeroes:
                var noHole = (Flags & NbdCommandFlags.NoHole) != 0;
                if ((Flags & NbdCommandFlags.FastZero) != 0 && !export.FastZero(noHole))
                {
                    Error = NbdError.NotSupported; // FAST_ZERO: fail at once rather than write zeroes
                    Finish();
                    return;
                }
                step = Step.Zeroing;
                nextByte = (long)Offset;
                endByte = (long)Offset + Length;
                NextZeroing(cdb);
                break;
            case NbdCommand.BlockStatus:
                step = Step.Querying;
                nextByte = (long)Offset;
                endByte = (long)Offset + Length;
                ExtentCount = 0;
                Extents = BufferPool.Shared.Rent(NbdProtocol.BlockStatusPrefix + NbdProtocol.ExtentLength * ((Flags & NbdCommandFlags.RequestOne) != 0 ? 1 : MaxExtents));
                NextQuery(cdb);
                break;
            default:
                Error = NbdError.Invalid;
                Finish();
                return;
        }
        Task.SetCdb(cdb);
        Issue();
    }

    void IThreadPoolWorkItem.Execute() => Start();

    private void Issue()
    {
        while (true)
        {
            ValueTask run;
            try
            {
                run = Export.Lun.ExecuteAsync(Task);
            }
            catch (Exception e)
            {
                Connection.Log.Error(e, "NBD {Remote}: the SCSI core threw for {Command}", Connection.RemoteText, Command);
                Error = NbdError.Io;
                Finish();
                return;
            }
            if (!run.IsCompleted)
            {
                pending = run.ConfigureAwait(false).GetAwaiter();
                pending.UnsafeOnCompleted(onExecuted);
                return;
            }
            if (!Executed(run.ConfigureAwait(false).GetAwaiter()))
                return;
        }
    }

    private void OnExecuted()
    {
        var p = pending;
        pending = default;
        if (Executed(p))
            Issue();
    }

    /// <summary>One SCSI command has run: true when another must be issued (a retry or the next step).</summary>
    private bool Executed(ConfiguredValueTaskAwaitable.ConfiguredValueTaskAwaiter awaiter)
    {
        try
        {
            awaiter.GetResult();
        }
        catch (Exception e)
        {
            Connection.Log.Error(e, "NBD {Remote}: the SCSI core failed {Command}", Connection.RemoteText, Command);
            Error = NbdError.Io;
            Finish();
            return false;
        }
        var t = Task;
        if (t.Status == ScsiStatus.CheckCondition && t.Sense.Key == SenseKey.UnitAttention && retries++ < MaxUnitAttentionRetries)
            return true; // consumed (new nexus, capacity changed, ...): the same command again
        if (t.Status != ScsiStatus.Good)
        {
            Error = NbdErrors.FromScsi(t, Command, Connection.ShuttingDown);
            Finish();
            return false;
        }
        retries = 0;
        Span<byte> cdb = stackalloc byte[16];
        switch (step)
        {
            case Step.ThenSync:
                step = Step.Single;
                Cdb16(cdb, 0x91, 0, Offset / (ulong)Export.BlockSize, Length / (uint)Export.BlockSize);
                PrepareNoData();
                t.SetCdb(cdb);
                return true;
            case Step.Zeroing when nextByte < endByte:
                NextZeroing(cdb);
                t.SetCdb(cdb);
                return true;
            case Step.Zeroing when Fua:
                step = Step.ThenSync;
                goto case Step.ThenSync;
            case Step.Querying:
                if (TakeDescriptors() && nextByte < endByte && ExtentCount < MaxExtents && (Flags & NbdCommandFlags.RequestOne) == 0)
                {
                    NextQuery(cdb);
                    t.SetCdb(cdb);
                    return true;
                }
                if (ExtentCount == 0)
                    Error = NbdError.Io; // GET LBA STATUS described nothing at the offset: nothing true can be said
                break;
        }
        if (Command == NbdCommand.Read && Connection.StructuredReplies)
            FindHoles();
        Finish();
        return false;
    }

    private void Finish()
    {
        if (!Connection.Sender.Enqueue(this))
            Connection.Recycle(this);
    }

    // ---- CDBs ----

    private static void Cdb16(Span<byte> cdb, byte opcode, byte flags, ulong lba, uint blocks)
    {
        cdb.Clear();
        cdb[0] = opcode;
        cdb[1] = flags;
        Cdb.Put64(cdb, 2, lba);
        Cdb.Put32(cdb, 10, blocks);
    }

    private void PrepareNoData()
    {
        Task.Direction = DataDirection.None;
        Task.ExpectedDataOutLength = 0;
        Task.DataOutLength = 0;
        Task.ExpectedDataInLength = 0;
    }

    /// <summary>UNMAP(10) and its parameter list: one descriptor per <see cref="MediumCommands.MaxUnmapBlocks"/> blocks.</summary>
    private void Unmap(Span<byte> cdb, ulong lba, uint blocks)
    {
        var count = (int)((blocks + MediumCommands.MaxUnmapBlocks - 1) / MediumCommands.MaxUnmapBlocks);
        var length = 8 + 16 * count;
        cdb.Clear();
        cdb[0] = 0x42;
        Cdb.Put16(cdb, 7, length);
        var list = BufferPool.Shared.Rent(length);
        var p = list.Span;
        p.Clear();
        Cdb.Put16(p, 0, length - 2);      // UNMAP DATA LENGTH
        Cdb.Put16(p, 2, 16 * count);      // UNMAP BLOCK DESCRIPTOR DATA LENGTH
        for (var i = 0; i < count; i++)
        {
            var n = Math.Min(blocks, MediumCommands.MaxUnmapBlocks);
            Cdb.Put64(p, 8 + 16 * i, lba);
            Cdb.Put32(p, 16 + 16 * i, n);
            lba += n;
            blocks -= n;
        }
        Task.DataOutBuffer = list;
        Task.DataOutLength = length;
        Task.ExpectedDataOutLength = length;
        Task.Direction = DataDirection.Out;
    }

    /// <summary>The next WRITE SAME(16) of a WRITE_ZEROES, at most the LU's WRITE SAME limit long.</summary>
    private void NextZeroing(Span<byte> cdb)
    {
        var export = Export;
        var bs = export.BlockSize;
        var blocks = (uint)Math.Min((endByte - nextByte) / bs, (long)MediumCommands.MaxWriteSameBlocks(export.Lun));
        var unmap = (Flags & NbdCommandFlags.NoHole) == 0 && export.CanUnmap && export.UnmapReadsZeroes;
        Cdb16(cdb, 0x93, (byte)((unmap ? 0x08 : 0) | 0x01), (ulong)(nextByte / bs), blocks); // UNMAP, NDOB
        nextByte += (long)blocks * bs;
        PrepareNoData();
    }

    /// <summary>The next GET LBA STATUS from <see cref="nextByte"/>.</summary>
    private void NextQuery(Span<byte> cdb)
    {
        var descriptors = (Flags & NbdCommandFlags.RequestOne) != 0 ? 1 : DescriptorsPerQuery;
        var alloc = 8 + 16 * descriptors;
        cdb.Clear();
        cdb[0] = 0x9E;
        cdb[1] = 0x12;
        Cdb.Put64(cdb, 2, (ulong)(nextByte / Export.BlockSize));
        Cdb.Put32(cdb, 10, (uint)alloc);
        Task.Direction = DataDirection.In;
        Task.ExpectedDataInLength = alloc;
        Task.ExpectedDataOutLength = 0;
        Task.DataOutLength = 0;
    }

    /// <summary>Turns GET LBA STATUS descriptors into extents; false when they said nothing new (stop asking).</summary>
    private bool TakeDescriptors()
    {
        if (Task.DataInBuffer is not { } data || Task.DataInLength < 8)
            return false;
        var d = data.Span[..Task.DataInLength];
        var count = ((int)Math.Min(Cdb.U32(d, 0) + 4L, d.Length) - 8) / 16; // PARAMETER DATA LENGTH counts from byte 4
        var bs = Export.BlockSize;
        var zero = Export.UnmapReadsZeroes;
        var e = Extents!.Span;
        var progressed = false;
        var room = (Flags & NbdCommandFlags.RequestOne) != 0 ? 1 : MaxExtents;
        for (var i = 0; i < count && nextByte < endByte; i++)
        {
            var at = 8 + 16 * i;
            var start = (long)Cdb.U64(d, at) * bs;
            var length = (long)Cdb.U32(d, at + 8) * bs;
            if (start > nextByte || start + length <= nextByte || length == 0)
                break; // not contiguous with what is known: ask again from there
            var status = (d[at + 12] & 0x0F) switch
            {
                0 => 0u,                                                     // mapped
                1 => NbdMetaContext.StateHole | (zero ? NbdMetaContext.StateZero : 0), // deallocated
                _ => zero ? NbdMetaContext.StateZero : 0u,                  // anchored: allocated, reads as zeroes with LBPRZ
            };
            // Clipped to the request, so no extent (nor their sum) outgrows the u32 request length.
            var take = Math.Min(start + length, endByte) - nextByte;
            var last = NbdProtocol.BlockStatusPrefix + NbdProtocol.ExtentLength * (ExtentCount - 1);
            if (ExtentCount > 0 && NbdProtocol.U32(e, last + 4) == status)
            {
                NbdProtocol.Put32(e, last, (uint)(NbdProtocol.U32(e, last) + take)); // same state as the last one: one extent
            }
            else
            {
                if (ExtentCount == room)
                    break;
                var put = NbdProtocol.BlockStatusPrefix + NbdProtocol.ExtentLength * ExtentCount;
                NbdProtocol.Put32(e, put, (uint)take);
                NbdProtocol.Put32(e, put + 4, status);
                ExtentCount++;
            }
            nextByte += take;
            progressed = true;
        }
        return progressed;
    }

    /// <summary>
    /// Cuts a large READ's data into runs of data and of zeroes (granules of
    /// <see cref="HoleGranule"/>), so that zeroes cross the wire as OFFSET_HOLE chunks. With DF
    /// the client asked for one chunk: no scan.
    /// </summary>
    private void FindHoles()
    {
        RunCount = 0;
        var length = (int)Length;
        if ((Flags & NbdCommandFlags.DontFragment) != 0 || length < HoleScanMinimum || Task.DataInBuffer is not { } buffer)
            return;
        var data = buffer.Span[..length];
        var runStart = 0;
        var runHole = false;
        var cut = false;
        for (var at = 0; at < length; at += HoleGranule)
        {
            var n = Math.Min(HoleGranule, length - at);
            var hole = !data.Slice(at, n).ContainsAnyExcept((byte)0);
            if (at == 0)
            {
                runHole = hole;
                continue;
            }
            if (hole == runHole)
                continue;
            if (RunCount == MaxReadRuns - 1)
            {
                cut = true; // the rest goes as one last run
                break;
            }
            Runs[RunCount++] = (runStart, runHole ? -(at - runStart) : at - runStart);
            runStart = at;
            runHole = hole;
        }
        var rest = length - runStart;
        var restHole = runHole && (!cut || !data[runStart..].ContainsAnyExcept((byte)0));
        Runs[RunCount++] = (runStart, restHole ? -rest : rest);
        if (RunCount == 1 && !restHole)
            RunCount = 0; // all data: the plain one-chunk reply
    }

    /// <summary>Clears the request for reuse; its buffers go back to the pool.</summary>
    public void Reset()
    {
        Task.Reset();
        Extents?.Dispose();
        Extents = null;
        ExtentCount = 0;
        RunCount = 0;
        Command = default;
        Flags = 0;
        Cookie = 0;
        Offset = 0;
        Length = 0;
        Error = 0;
        BudgetBytes = 0;
        step = Step.Single;
        retries = 0;
        nextByte = endByte = 0;
    }

    private enum Step : byte
    {
        /// <summary>One SCSI command and done.</summary>
        Single,
        /// <summary>Then SYNCHRONIZE CACHE of the range (FUA on TRIM and WRITE_ZEROES).</summary>
        ThenSync,
        /// <summary>WRITE SAME pieces until the range is zeroed.</summary>
        Zeroing,
        /// <summary>GET LBA STATUS until the range is described.</summary>
        Querying,
    }
}

/// <summary>
/// SCSI outcomes as NBD errors, the way nbdkit maps errno (shared/design/fabrics-tcmu-nbd.md
/// 3.7): write protection is EPERM, an LBA out of range is ENOSPC for writes and EINVAL
/// otherwise, space allocation failed is ENOSPC, medium, hardware and not-ready conditions
/// are EIO.
/// </summary>
internal static class NbdErrors
{
    public static uint FromScsi(ScsiTask task, NbdCommand command, bool shuttingDown)
    {
        switch (task.Status)
        {
            case ScsiStatus.Good:
                return NbdError.None;
            case ScsiStatus.ReservationConflict:
                return NbdError.Perm; // another initiator holds the LU
            case ScsiStatus.TaskAborted:
                return shuttingDown ? NbdError.Shutdown : NbdError.Io;
            case ScsiStatus.CheckCondition:
                break;
            default:
                return NbdError.Io;
        }
        var sense = task.Sense;
        return sense.Key switch
        {
            SenseKey.DataProtect when sense.Asc == 0x27 && sense.Ascq == 0x07 => NbdError.NoSpace, // SPACE ALLOCATION FAILED WRITE PROTECT
            SenseKey.DataProtect => NbdError.Perm,
            SenseKey.IllegalRequest when sense.Asc == 0x21 && sense.Ascq == 0x00 =>
                command is NbdCommand.Write or NbdCommand.WriteZeroes ? NbdError.NoSpace : NbdError.Invalid,
            SenseKey.IllegalRequest => NbdError.Invalid,
            _ => NbdError.Io, // MEDIUM ERROR, HARDWARE ERROR, NOT READY, ABORTED COMMAND, a unit attention that kept coming
        };
    }
}
