using System.Threading.Tasks.Sources;
using HandlerRuntime.Buffers;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi;

/// <summary>
/// One SCSI command on its way through the core, fabric-neutral. A fabric fills the
/// request half (nexus, LUN, CDB, attribute, data-out) and calls
/// <see cref="ScsiTarget.ExecuteAsync"/>; the core fills the response half (status,
/// sense bytes, data-in). Tasks are pooled by the fabric: <see cref="Reset"/> makes one
/// reusable, and nothing here allocates per command.
/// </summary>
public sealed class ScsiTask : IScsiCommand, IValueTaskSource
{
    public const int MaxCdbLength = 260;
    public const int MaxSenseLength = 252;

    private readonly byte[] cdb = new byte[MaxCdbLength];
    private readonly byte[] sense = new byte[MaxSenseLength];
    private ManualResetValueTaskSourceCore<bool> admission = new() { RunContinuationsAsynchronously = true };
    private CancellationTokenSource? abortSource;
    private PendingRun? pendingRun;

    // ---- request, set by the fabric ----

    /// <summary>The I_T nexus the command came on.</summary>
    public ItNexus Nexus { get; set; } = null!;

    /// <summary>The LUN number as addressed by the initiator.</summary>
    public ulong Lun { get; set; }

    /// <summary>The initiator's tag for this task (for ABORT TASK).</summary>
    public uint Tag { get; set; }

    public TaskAttribute Attribute { get; set; }

    /// <summary>The direction the fabric announced.</summary>
    public DataDirection Direction { get; set; }

    /// <summary>How many bytes of data-in the initiator will accept (its expected transfer length).</summary>
    public int ExpectedDataInLength { get; set; }

    /// <summary>
    /// How many bytes of data-out the initiator announced (its expected transfer length),
    /// which may differ from what the CDB asks and from what the fabric gathered; commands
    /// whose data-out must be exactly sized (WRITE SAME, COMPARE AND WRITE) check it.
    /// </summary>
    public int ExpectedDataOutLength { get; set; }

    /// <summary>Write data or parameter list, gathered by the fabric before execution; null when none.</summary>
    public BufferPool.PooledBuffer? DataOutBuffer { get; set; }

    /// <summary>Bytes of <see cref="DataOutBuffer"/> that hold data.</summary>
    public int DataOutLength { get; set; }

    public int CdbLength { get; private set; }

    public ReadOnlySpan<byte> CdbSpan => new(cdb, 0, CdbLength);

    public void SetCdb(ReadOnlySpan<byte> value)
    {
        if (value.Length > MaxCdbLength)
            throw new ArgumentException("CDB longer than 260 bytes.");
        value.CopyTo(cdb);
        CdbLength = value.Length;
    }

    // ---- response, set by the core ----

    public ScsiStatus Status { get; set; }

    /// <summary>Formatted sense bytes (fixed or descriptor), valid when <see cref="SenseLength"/> is non-zero.</summary>
    public ReadOnlySpan<byte> SenseBytes => new(sense, 0, SenseLength);

    public int SenseLength { get; private set; }

    /// <summary>The sense content behind <see cref="SenseBytes"/>.</summary>
    public SenseData Sense { get; private set; }

    /// <summary>Read data, owned by the task until <see cref="Reset"/>; null when none.</summary>
    public BufferPool.PooledBuffer? DataInBuffer { get; private set; }

    /// <summary>Bytes of <see cref="DataInBuffer"/> the command produced (before truncation to the expected length).</summary>
    public int DataInLength { get; set; }

    /// <summary>Set when the task was aborted by task management; the fabric must not send a response.</summary>
    public bool Aborted { get; internal set; }

    /// <summary>Cancelled when the task is aborted.</summary>
    public CancellationToken AbortToken => (abortSource ??= new CancellationTokenSource()).Token;

    // ---- decoded by the core ----
    internal CommandInfo? Command;
    internal ulong Lba;
    internal uint Blocks;

    // ---- bookkeeping for the LUN's task set ----
    internal ScsiTask? SetNext;
    internal ScsiTask? SetPrev;
    internal bool Waiting;
    internal bool Exclusive;
    internal ScsiLun? RunningOn;
    /// <summary>When the LU took it (Stopwatch ticks), for its latency.</summary>
    internal long StartedAt;

    /// <summary>How the LUN waits for this task's I/O (created once, reused by every command of this task).</summary>
    internal PendingRun PendingRun => pendingRun ??= new PendingRun(this);

    /// <summary>The data-out must hold at least <paramref name="bytes"/> (short data-out is refused, not padded).</summary>
    internal void RequireDataOut(long bytes)
    {
        if (DataOutLength < bytes)
            throw new ScsiException(Sdk.Sense.InvalidFieldInInformationUnit);
    }

    /// <summary>Rents a data-in buffer of <paramref name="length"/> bytes, replacing any earlier one.</summary>
    public Memory<byte> AllocateDataIn(int length)
    {
        if (DataInBuffer is null || DataInBuffer.Capacity < length)
        {
            DataInBuffer?.Dispose();
            DataInBuffer = BufferPool.Shared.Rent(length);
        }
        DataInBuffer.Length = length;
        DataInLength = length;
        return DataInBuffer.Memory;
    }

    /// <summary>
    /// Offers where data-in should go (a TCMU data area lent through
    /// <see cref="BufferPool.PooledBuffer.CreateLoan"/>): <see cref="AllocateDataIn"/> then
    /// produces the data there, in place, when it fits, and otherwise replaces it with a pooled
    /// buffer (the fabric sees <see cref="DataInBuffer"/> changed and copies). The task owns it
    /// like any data-in buffer until <see cref="Reset"/>.
    /// </summary>
    public void ProvideDataIn(BufferPool.PooledBuffer buffer)
    {
        DataInBuffer?.Dispose();
        DataInBuffer = buffer;
        buffer.Length = 0;
    }

    internal void SetSense(SenseData value, bool descriptorFormat)
    {
        Status = ScsiStatus.CheckCondition;
        Sense = value;
        SenseLength = SenseFormatter.Write(value, descriptorFormat, sense);
    }

    internal void ClearResponse()
    {
        Status = ScsiStatus.Good;
        SenseLength = 0;
        Sense = default;
        DataInLength = 0;
    }

    internal void Abort()
    {
        Aborted = true;
        abortSource?.Cancel();
    }

    // admission: a task waiting in the task set awaits this source; completed by the set.
    internal ValueTask WaitAdmissionAsync() => new(this, admission.Version);

    internal void Admit() => admission.SetResult(true);

    /// <summary>Returns buffers and clears every field, so the task can be reused.</summary>
    public void Reset()
    {
        DataOutBuffer?.Dispose();
        DataOutBuffer = null;
        DataOutLength = 0;
        DataInBuffer?.Dispose();
        DataInBuffer = null;
        ClearResponse();
        CdbLength = 0;
        Nexus = null!;
        Lun = 0;
        Tag = 0;
        Attribute = TaskAttribute.Simple;
        Direction = DataDirection.None;
        ExpectedDataInLength = 0;
        ExpectedDataOutLength = 0;
        Aborted = false;
        if (abortSource is not null && !abortSource.TryReset())
        {
            abortSource.Dispose();
            abortSource = null;
        }
        admission.Reset();
        SetNext = SetPrev = null;
        Waiting = Exclusive = false;
        RunningOn = null;
        Command = null;
    }

    // ---- IScsiCommand, the handler's view ----
    ReadOnlyMemory<byte> IScsiCommand.Cdb => new(cdb, 0, CdbLength);
    ReadOnlyMemory<byte> IScsiCommand.DataOut => DataOutBuffer is null ? default : DataOutBuffer.Memory[..DataOutLength];
    Memory<byte> IScsiCommand.DataIn => HandlerDataIn;
    string IScsiCommand.InitiatorPort => Nexus.InitiatorPort;

    internal Memory<byte> HandlerDataIn { get; set; }

    void IValueTaskSource.GetResult(short token) => admission.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => admission.GetStatus(token);
    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => admission.OnCompleted(continuation, state, token, flags);
}
