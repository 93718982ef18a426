using System.Runtime.CompilerServices;
using HandlerRuntime.Buffers;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Fabrics.Tcmu;

/// <summary>
/// One command from a TCMU ring on its way through the SCSI core: the kernel's cmd_id, the
/// data runs copied out of its entry, and a pooled <see cref="ScsiTask"/> whose data-out and
/// data-in are the data area itself when the command's runs are contiguous (one window each, lent
/// to the task), and a pooled buffer gathered or scattered by the fabric only when they are not.
/// Pooled per device and reused.
/// </summary>
internal sealed unsafe class TcmuCommand : IThreadPoolWorkItem
{
    private readonly TcmuDevice device;
    private readonly Action onExecuted;
    private readonly MappedWindow outWindow = new();
    private readonly MappedWindow inWindow = new();
    private readonly BufferPool.PooledBuffer outLoan = BufferPool.PooledBuffer.CreateLoan();
    private readonly BufferPool.PooledBuffer inLoan = BufferPool.PooledBuffer.CreateLoan();
    private DataRun[] runs = new DataRun[8];
    private int outRuns, inRuns;
    private ConfiguredValueTaskAwaitable.ConfiguredValueTaskAwaiter pending;
    private ScsiLun lun = null!;

    public TcmuCommand(TcmuDevice device)
    {
        this.device = device;
        onExecuted = OnExecuted;
    }

    public ScsiTask Task { get; } = new();

    public ushort CmdId;

    /// <summary>Data-in bytes the kernel expects (the length of the data-in runs).</summary>
    public int DataInBytes { get; private set; }

    public int DataOutBytes { get; private set; }

    /// <summary>Copies the request out of <paramref name="entry"/> (before anything may write a response over it).</summary>
    public void Read(CommandRing ring, in RingEntry entry, int blockSize)
    {
        CmdId = entry.CmdId;
        Span<byte> cdb = stackalloc byte[ScsiTask.MaxCdbLength];
        var cdbLength = ring.CopyCdb(entry, cdb);
        Task.SetCdb(cdb[..cdbLength]);
        var (count, bidi) = ring.IovecCounts(entry);
        if (runs.Length < count + bidi)
            runs = new DataRun[Math.Max(count + bidi, runs.Length * 2)];
        long total = 0;
        for (var i = 0; i < count + bidi; i++)
        {
            runs[i] = ring.Iovec(entry, i);
            total += runs[i].Length;
        }
        if (total > int.MaxValue)
            throw new RingCorruptException($"command {entry.CmdId} carries {total} bytes");
        // The entry carries no direction: a bidirectional command has data-in runs after its
        // data-out runs; otherwise the CDB says whether the runs carry data-out (WRITE, UNMAP,
        // MODE SELECT, ...) or are the place for data-in.
        var dataOut = bidi > 0 || (count > 0 && TransferLength.DataOutBytes(Task.CdbSpan, blockSize) is > 0);
        outRuns = dataOut ? count : 0;
        inRuns = dataOut ? bidi : count;
        DataOutBytes = Sum(0, outRuns);
        DataInBytes = Sum(outRuns, inRuns);
    }

    private int Sum(int first, int count)
    {
        long n = 0;
        for (var i = first; i < first + count; i++)
            n += runs[i].Length;
        return (int)n;
    }

    /// <summary>Fills the task for the core: the data area lent in place where it is contiguous.</summary>
    public void Prepare(CommandRing ring, ItNexus nexus, ScsiLun target)
    {
        lun = target;
        var t = Task;
        t.Nexus = nexus;
        t.Lun = 0;
        t.Tag = CmdId;
        t.Attribute = TaskAttribute.Simple; // LIO has already applied the task attributes
        t.ExpectedDataOutLength = DataOutBytes;
        t.ExpectedDataInLength = DataInBytes;
        t.Direction = (DataOutBytes > 0 ? DataDirection.Out : DataDirection.None) | (DataInBytes > 0 ? DataDirection.In : DataDirection.None);
        if (DataOutBytes > 0)
        {
            if (Contiguous(0, outRuns))
            {
                outLoan.Lend(outWindow.Set(ring.Pointer(runs[0].Offset), DataOutBytes));
                t.DataOutBuffer = outLoan;
            }
            else
            {
                var gathered = BufferPool.Shared.Rent(DataOutBytes);
                var into = gathered.Span;
                for (var i = 0; i < outRuns; i++)
                {
                    new ReadOnlySpan<byte>(ring.Pointer(runs[i].Offset), runs[i].Length).CopyTo(into);
                    into = into[runs[i].Length..];
                }
                t.DataOutBuffer = gathered;
            }
            t.DataOutLength = DataOutBytes;
        }
        if (DataInBytes > 0 && Contiguous(outRuns, inRuns))
        {
            inLoan.Lend(inWindow.Set(ring.Pointer(runs[outRuns].Offset), DataInBytes));
            t.ProvideDataIn(inLoan);
        }
    }

    private bool Contiguous(int first, int count)
    {
        for (var i = first + 1; i < first + count; i++)
            if (runs[i - 1].Offset + runs[i - 1].Length != runs[i].Offset)
                return false;
        return count > 0;
    }

    /// <summary>
    /// Puts the data-in where the kernel reads it: nothing to do when the core produced it in
    /// the lent window; otherwise it is scattered over the data-in runs. Returns the bytes produced.
    /// </summary>
    public int DeliverDataIn(CommandRing ring)
    {
        if (DataInBytes == 0)
            return 0;
        var t = Task;
        var produced = Math.Clamp(t.DataInLength, 0, DataInBytes);
        if (t.DataInBuffer is { } buffer && buffer != inLoan && produced > 0)
        {
            ReadOnlySpan<byte> from = buffer.Span[..produced];
            for (var i = outRuns; i < outRuns + inRuns && !from.IsEmpty; i++)
            {
                var n = Math.Min(from.Length, runs[i].Length);
                from[..n].CopyTo(new Span<byte>(ring.Pointer(runs[i].Offset), n));
                from = from[n..];
            }
        }
        if (produced < DataInBytes && !ring.ReadLenSupported)
            ZeroFrom(ring, produced); // without READ_LEN the kernel copies the whole area: never stale data of other commands
        return produced;
    }

    private void ZeroFrom(CommandRing ring, int from)
    {
        var skip = from;
        for (var i = outRuns; i < outRuns + inRuns; i++)
        {
            var run = runs[i];
            if (skip >= run.Length)
            {
                skip -= run.Length;
                continue;
            }
            new Span<byte>(ring.Pointer(run.Offset + skip), run.Length - skip).Clear();
            skip = 0;
        }
    }

    /// <summary>Runs the task in the core; the completion comes back to the device on whatever thread finishes it.</summary>
    public void Execute()
    {
        ValueTask run;
        try
        {
            run = lun.ExecuteAsync(Task);
        }
        catch (Exception e)
        {
            device.Log.Error(e, "TCMU {Device}: the SCSI core threw for command {CmdId}", device.Name, CmdId);
            Task.Status = ScsiStatus.Busy;
            device.Complete(this);
            return;
        }
        if (run.IsCompleted)
        {
            Finish(run.ConfigureAwait(false).GetAwaiter());
            return;
        }
        pending = run.ConfigureAwait(false).GetAwaiter();
        pending.UnsafeOnCompleted(onExecuted);
    }

    void IThreadPoolWorkItem.Execute() => Execute();

    private void OnExecuted()
    {
        var p = pending;
        pending = default;
        Finish(p);
    }

    private void Finish(ConfiguredValueTaskAwaitable.ConfiguredValueTaskAwaiter awaiter)
    {
        try
        {
            awaiter.GetResult();
        }
        catch (Exception e)
        {
            device.Log.Error(e, "TCMU {Device}: the SCSI core failed command {CmdId}", device.Name, CmdId);
            Task.Status = ScsiStatus.Busy;
        }
        device.Complete(this);
    }

    /// <summary>Clears every field for reuse; the windows forget the data area.</summary>
    public void Reset()
    {
        Task.Reset();
        outWindow.Clear();
        inWindow.Clear();
        lun = null!;
        CmdId = 0;
        outRuns = inRuns = 0;
        DataInBytes = DataOutBytes = 0;
    }
}
