using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Copy;

/// <summary>How far an EXTENDED COPY got, as RECEIVE COPY RESULTS COPY STATUS reports it (SPC-4 6.18.2).</summary>
internal enum CopyManagerStatus : byte
{
    InProgress = 0x00,
    CompletedWithoutErrors = 0x01,
    CompletedWithErrors = 0x02,
}

/// <summary>
/// One EXTENDED COPY known to a copy manager: its progress while it runs, and afterwards its
/// outcome, including the sense it ended with (FAILED SEGMENT DETAILS, SPC-4 6.18.5).
/// Progress is written by the copy and read by RECEIVE COPY RESULTS on other tasks.
/// </summary>
internal sealed class CopyOperation(ItNexus nexus, byte listId, ListIdUsage usage)
{
    private long bytesWritten;
    private volatile int segmentsProcessed;
    private volatile CopyManagerStatus status = CopyManagerStatus.InProgress;

    public ItNexus Nexus { get; } = nexus;
    public byte ListId { get; } = listId;
    public ListIdUsage Usage { get; } = usage;

    public CopyManagerStatus Status => status;

    /// <summary>Segments completed.</summary>
    public int SegmentsProcessed => segmentsProcessed;

    /// <summary>Bytes written to destinations so far.</summary>
    public long BytesWritten => Interlocked.Read(ref bytesWritten);

    /// <summary>The status the EXTENDED COPY command ended with, when it failed.</summary>
    public ScsiStatus FailedStatus { get; private set; }

    /// <summary>The sense bytes the EXTENDED COPY command ended with, as sent; null until it fails with CHECK CONDITION or after they were read.</summary>
    public byte[]? FailedSense { get; set; }

    public void AddWritten(int bytes) => Interlocked.Add(ref bytesWritten, bytes);

    public void SegmentDone() => segmentsProcessed++;

    public void Succeed() => status = CopyManagerStatus.CompletedWithoutErrors;

    public void Fail(ScsiStatus commandStatus, byte[]? sense)
    {
        FailedStatus = commandStatus;
        FailedSense = sense;
        status = CopyManagerStatus.CompletedWithErrors;
    }
}

/// <summary>
/// The per-LU copy manager state behind EXTENDED COPY and RECEIVE COPY RESULTS: the copies
/// running (to refuse a duplicate list identifier, SPC-4 6.4.1, and to bound concurrency),
/// and the results held for RECEIVE COPY RESULTS, keyed by I_T nexus and list identifier
/// (SPC-4 6.18: results belong to the nexus that sent the command). Held results are
/// bounded: the oldest completed one is discarded first, which SPC-4 allows when the copy
/// manager needs the resources.
/// </summary>
internal sealed class CopyManager
{
    private readonly object gate = new();
    private readonly Dictionary<(long Nexus, byte ListId), CopyOperation> byList = new();
    private readonly LinkedList<CopyOperation> completedOldestFirst = new();
    private int running;

    /// <summary>How long a step of a copy waits to enter another LU's task set (<see cref="CopyLimits.ForeignAdmissionTimeout"/>).</summary>
    public TimeSpan StepAdmissionTimeout { get; set; } = CopyLimits.ForeignAdmissionTimeout;

    /// <summary>Copies running now.</summary>
    public int Running { get { lock (gate) return running; } }

    /// <summary>
    /// Registers a copy about to start. A list identifier still running on the same nexus is
    /// refused (OPERATION IN PROGRESS); results held under it are discarded, since a new
    /// command with the same list identifier replaces them.
    /// </summary>
    /// <exception cref="ScsiException">OPERATION IN PROGRESS or INSUFFICIENT RESOURCES.</exception>
    public CopyOperation Begin(ItNexus nexus, byte listId, ListIdUsage usage)
    {
        var operation = new CopyOperation(nexus, listId, usage);
        lock (gate)
        {
            var key = (nexus.Id, listId);
            if (usage != ListIdUsage.None && byList.TryGetValue(key, out var existing))
            {
                if (existing.Status == CopyManagerStatus.InProgress)
                    throw new ScsiException(Sense.OperationInProgress);
                Forget(existing);
            }
            if (running >= CopyLimits.MaxConcurrentCopies)
                throw new ScsiException(Sense.InsufficientResources);
            running++;
            if (usage != ListIdUsage.None)
                byList[key] = operation;
        }
        return operation;
    }

    /// <summary>Records the end of a copy; its results stay available only when its list ID usage asks the copy manager to hold them.</summary>
    public void End(CopyOperation operation)
    {
        lock (gate)
        {
            running--;
            if (operation.Usage != ListIdUsage.Hold)
            {
                if (byList.TryGetValue((operation.Nexus.Id, operation.ListId), out var current) && current == operation)
                    byList.Remove((operation.Nexus.Id, operation.ListId));
                return;
            }
            completedOldestFirst.AddLast(operation);
            while (completedOldestFirst.Count > CopyLimits.MaxHeldResults)
                Forget(completedOldestFirst.First!.Value);
        }
    }

    /// <summary>The copy known under <paramref name="listId"/> for <paramref name="nexus"/>, running or held.</summary>
    public CopyOperation? Find(ItNexus nexus, byte listId)
    {
        lock (gate)
            return byList.GetValueOrDefault((nexus.Id, listId));
    }

    /// <summary>
    /// Reads the failed segment details of a copy for an allocation length: they are discarded
    /// once transferred in full, or when the application client asks for none (SPC-4 6.18.5).
    /// </summary>
    public byte[]? TakeFailedSense(CopyOperation operation, uint allocationLength)
    {
        lock (gate)
        {
            var sense = operation.FailedSense;
            if (sense is not null && (allocationLength == 0 || allocationLength >= ReceiveCopyResultsCommand.FailedSegmentDetailsLength(sense.Length)))
                operation.FailedSense = null;
            return sense;
        }
    }

    /// <summary>Discards every held result (logical unit reset).</summary>
    public void DiscardHeld()
    {
        lock (gate)
        {
            foreach (var operation in completedOldestFirst)
                byList.Remove((operation.Nexus.Id, operation.ListId));
            completedOldestFirst.Clear();
        }
    }

    private void Forget(CopyOperation operation)
    {
        byList.Remove((operation.Nexus.Id, operation.ListId));
        completedOldestFirst.Remove(operation);
    }
}
