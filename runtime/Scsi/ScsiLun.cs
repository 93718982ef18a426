using HandlerRuntime.Devices;
using HandlerRuntime.Scsi.Reservations;
using HandlerRuntime.Sdk;
using Serilog;
using Serilog.Events;

namespace HandlerRuntime.Scsi;

/// <summary>
/// A logical unit in the SCSI core: a handler's device plus everything SCSI keeps per
/// LU (mode parameters, unit attentions, reservations, the task set). Fabric-neutral:
/// fabrics reach it through <see cref="ScsiTarget"/>.
/// </summary>
public sealed partial class ScsiLun : IDeviceEvents
{
    /// <summary>The runtime's own cap on one transfer, whatever the device allows (libiscsi's tests write 32 MiB at once).</summary>
    public const int MaxTransferBytes = 32 << 20;

    private readonly TaskSet taskSet;
    private readonly int physicalBlockSize;
    private readonly FailureLog storeFailures = new();
    private int readyState; // 0 ready, 1 transitioning (connection lost), 2 lock lost

    /// <param name="identity">Names the LU shows initiators.</param>
    /// <param name="device">The handler's device.</param>
    /// <param name="readOnly">Refuse every write with DATA PROTECT.</param>
    /// <param name="writeCache">The caching page's default WCE.</param>
    /// <param name="log">Where the LU logs.</param>
    /// <param name="removable">A removable medium (RMB=1).</param>
    /// <param name="stateDirectory">
    /// The LUN's state directory, kept across restarts: persistent reservations made with APTPL
    /// are saved there and restored here. Null for an LU that cannot persist them (APTPL is then
    /// refused). Throws <see cref="InvalidDataException"/> when the saved state is unreadable.
    /// </param>
    /// <param name="physicalBlockSize">Physical block size to report (READ CAPACITY(16), VPD B0h), overriding the device's; 0 for the device's.</param>
    public ScsiLun(LunIdentity identity, IBlockDevice device, bool readOnly, bool writeCache, ILogger log, string? stateDirectory = null, bool removable = false, int physicalBlockSize = 0)
    {
        Identity = identity;
        this.physicalBlockSize = physicalBlockSize;
        ReadOnly = readOnly;
        Log = log.ForContext("Lun", identity.Name);
        Mode = new ModeState(writeCache);
        Medium = new RemovableMedium(removable);
        taskSet = new TaskSet(int.MaxValue);
        Reservations = new ReservationManager(stateDirectory, Log);
        AttachDevice(device);
        if (stateDirectory is not null && (Capabilities & DeviceCapabilities.Write) != 0 && !readOnly)
            AtomicJournal = new AtomicWriteJournal(stateDirectory);
        Sanitizer = new Sanitize.SanitizeOperation(this, stateDirectory);
        Sanitizer.ResumeIfInterrupted();
    }

    /// <summary>The journal behind WRITE ATOMIC; null (and the command not offered) without a state directory.</summary>
    internal AtomicWriteJournal? AtomicJournal { get; }

    /// <summary>Replays a WRITE ATOMIC a crash interrupted; call before the LU serves commands.</summary>
    public async Task RecoverAsync(CancellationToken ct)
    {
        if (AtomicJournal is not null && await AtomicJournal.RecoverAsync(Device, ct))
            Log.Warning("LUN {Lun}: replayed a WRITE ATOMIC that a crash interrupted", Name);
    }

    /// <summary>The LU's asymmetric access state through its target port group.</summary>
    internal Alua.AluaPortGroup Alua { get; } = new();

    /// <summary>Changes the LU's ALUA state as an implicit transition (an operator, a failover), telling every initiator.</summary>
    public void SetAccessState(Alua.AsymmetricAccessState state) => Alua.Change(state, explicitly: false, by: null, UnitAttentions);

    public Alua.AsymmetricAccessState AccessState => Alua.State;

    /// <summary>The LU's SANITIZE operation, running or not.</summary>
    internal Sanitize.SanitizeOperation Sanitizer { get; }

    public LunIdentity Identity { get; }

    public string Name => Identity.Name;

    internal ILogger Log { get; }

    /// <summary>The handler's device, behind the adapter that every call to it goes through.</summary>
    internal DeviceAdapter Device { get; private set; } = null!;

    internal IScsiCommandHandler? Hook => Device.CommandHook;

    internal DeviceGeometry Geometry => Device.Geometry;

    /// <summary>What the device itself declared (the adapter emulates FUA and write zeroes beyond it).</summary>
    internal DeviceCapabilities Capabilities => Device.Native;

    internal ModeState Mode { get; }

    internal UnitAttentions UnitAttentions { get; } = new();

    internal RemovableMedium Medium { get; }

    /// <summary>Persistent reservations and the SPC-2 reservation of this LU.</summary>
    internal ReservationManager Reservations { get; }

    public bool ReadOnly { get; }

    public long BlockCount => Geometry.BlockCount;

    /// <summary>
    /// Whether blocks <paramref name="lba"/> to lba + blocks - 1 lie on the LU: the first LBA
    /// must exist and the range end within it (SBC-4 4.5; a zero-length range at an existing
    /// LBA is inside). Every range-checked command asks this, so the rule lives once.
    /// </summary>
    public bool Contains(ulong lba, ulong blocks)
    {
        var count = (ulong)BlockCount;
        return lba < count && blocks <= count - lba;
    }

    public int BlockSize => Geometry.LogicalBlockSize;

    public bool WriteCacheEnabled => Mode.WriteCacheEnabled;

    internal bool WriteProtected => ReadOnly || Mode.SoftwareWriteProtect || readyState == 2 || (Capabilities & DeviceCapabilities.Write) == 0;

    /// <summary>
    /// A fabric's own cap on one transfer, in blocks (0: none). TCMU sets the device's
    /// hw_max_sectors here, as tcmu-runner reports it in VPD B0h, so initiators stay below what
    /// LIO accepts for the device.
    /// </summary>
    public int FabricMaxTransferBlocks { get; set; }

    internal int MaxTransferBlocks
    {
        get
        {
            var cap = MaxTransferBytes / Geometry.LogicalBlockSize;
            if (FabricMaxTransferBlocks > 0)
                cap = Math.Min(cap, FabricMaxTransferBlocks);
            var dev = Geometry.MaxTransferBlocks;
            return dev > 0 ? Math.Min(dev, cap) : cap;
        }
    }

    /// <summary>
    /// Runs one command. The task enters the task set synchronously (so a fabric that
    /// calls this in command order gets SAM ordering), then runs asynchronously.
    /// Never throws: every outcome is a status on the task.
    /// </summary>
    public ValueTask ExecuteAsync(ScsiTask task)
    {
        task.ClearResponse();
        task.RunningOn = this;
        task.StartedAt = System.Diagnostics.Stopwatch.GetTimestamp();
        Stats.Started();
        task.Command = CommandTable.Find(task.CdbSpan);
        if (task.Command is { } known && !known.IsAvailableOn(this))
            task.Command = null; // not offered by this LU: an unknown opcode here
        task.Exclusive = task.Command is { } c && (c.Flags & CommandFlags.Exclusive) != 0;
        if (taskSet.TryEnter(task))
            return RunAsync(task);
        return WaitThenRunAsync(task);
    }

    private async ValueTask WaitThenRunAsync(ScsiTask task)
    {
        await task.WaitAdmissionAsync();
        await RunAsync(task);
    }

    private ValueTask RunAsync(ScsiTask task)
    {
        if (task.Aborted)
        {
            task.Status = ScsiStatus.TaskAborted; // aborted while waiting for admission: never ran
            End(task, null);
            return default;
        }
        if (retired)
        {
            // The LU was deleted while this command was on its way (a fabric had looked it up before):
            // answered as for a LUN that does not exist, never run on the closed device.
            Fail(task, Sense.LunNotSupported);
            End(task, null);
            return default;
        }
        ValueTask running;
        try
        {
            running = CommandDispatcher.DispatchAsync(this, task);
        }
        catch (Exception e)
        {
            End(task, e);
            return default;
        }
        if (!running.IsCompleted)
            return task.PendingRun.Await(this, running);
        Exception? error = null;
        try
        {
            running.GetAwaiter().GetResult();
        }
        catch (Exception e)
        {
            error = e;
        }
        End(task, error);
        return default;
    }

    /// <summary>The command has run: its failure (if any) becomes its status, and it leaves the task set.</summary>
    internal void End(ScsiTask task, Exception? error)
    {
        switch (error)
        {
            case null:
                break;
            case ScsiException e:
                Fail(task, e);
                break;
            case OperationCanceledException when task.Aborted:
                task.Status = ScsiStatus.TaskAborted;
                break;
            default:
                var writes = task.Command is { } c && (c.Flags & CommandFlags.Writes) != 0;
                if (DeviceErrors.ToScsi(error, writes) is { } mapped)
                {
                    storeFailures.Report(Log, Name, CommandDispatcher.NameOf(task.CdbSpan), mapped);
                    Fail(task, mapped);
                }
                else
                {
                    Log.Error(error, "LUN {Lun}: {Command} failed in the handler; answering HARDWARE ERROR", Name, CommandDispatcher.NameOf(task.CdbSpan));
                    Fail(task, Sense.InternalTargetFailure);
                }
                break;
        }
        taskSet.Leave(task);
        Count(task);
        if (Log.IsEnabled(LogEventLevel.Verbose))
            LogCommand(task);
    }

    /// <summary>Commands, bytes, latency and outcomes of this LU (`hrt stats`, the metrics endpoint).</summary>
    public Metrics.LunStats Stats { get; } = new();

    private void Count(ScsiTask task)
    {
        var flags = task.Command?.Flags ?? CommandFlags.None;
        var kind = (flags & CommandFlags.Writes) != 0 && (flags & CommandFlags.MediumAccess) != 0 ? Metrics.CommandKind.Write
            : (flags & CommandFlags.MediumAccess) != 0 && task.DataInLength > 0 ? Metrics.CommandKind.Read
            : Metrics.CommandKind.Other;
        var bytes = kind == Metrics.CommandKind.Write ? task.DataOutLength : task.DataInLength;
        Stats.Finished(kind, bytes, System.Diagnostics.Stopwatch.GetTimestamp() - task.StartedAt, task.Status, task.Sense.Key);
    }

    private void LogCommand(ScsiTask task)
    {
        if (task.Status == ScsiStatus.CheckCondition)
            Log.Verbose("{Nexus} LUN {Lun} CDB {Cdb} ({Command}) -> CHECK CONDITION {Sense}",
                task.Nexus.InitiatorPort, Name, Convert.ToHexString(task.CdbSpan), CommandDispatcher.NameOf(task.CdbSpan), task.Sense.ToString());
        else
            Log.Verbose("{Nexus} LUN {Lun} CDB {Cdb} ({Command}) -> {Status} data-in {Bytes}",
                task.Nexus.InitiatorPort, Name, Convert.ToHexString(task.CdbSpan), CommandDispatcher.NameOf(task.CdbSpan), task.Status, task.DataInLength);
    }

    internal void Fail(ScsiTask task, SenseData sense) => task.SetSense(sense, Mode.DescriptorSense);

    internal void Fail(ScsiTask task, ScsiException e)
    {
        if (e.Status == ScsiStatus.CheckCondition)
            Fail(task, e.Sense);
        else
            task.Status = e.Status;
    }

    /// <summary>Why medium access must wait, if it must: no medium, or the backing store unreachable.</summary>
    internal SenseData? NotReadySense => Sanitizer.NotReadySense ?? Medium.NotPresentSense ?? (readyState == 1 ? Sense.NotReadyTransitioning : null);

    // ---- lifecycle: quiesce, swap device, resize ----

    private volatile bool retired;

    /// <summary>
    /// After the LU is deleted and its device closed (while quiesced): commands that still reach
    /// it, held by the quiesce or sent by a fabric that had looked it up, are answered LOGICAL
    /// UNIT NOT SUPPORTED instead of waiting forever or touching the closed device.
    /// </summary>
    internal void Retire()
    {
        retired = true;
        Resume();
    }

    /// <summary>Holds new commands and waits for in-flight ones; pair with <see cref="Resume"/>.</summary>
    public Task QuiesceAsync() => taskSet.PauseAsync();

    public void Resume() => taskSet.Resume();

    /// <summary>Attaches a (re)opened device; call while quiesced or before first use.</summary>
    internal void AttachDevice(IBlockDevice device)
    {
        Device = device as DeviceAdapter ?? new DeviceAdapter(device, physicalBlockSize: physicalBlockSize);
        taskSet.MaxConcurrent = Device.ThreadModel == ThreadModel.Parallel ? int.MaxValue : 1;
    }

    /// <summary>
    /// Replaces the device (hot upgrade): new commands wait, in-flight ones finish, the old
    /// device is flushed and closed, the new one opened. If that fails, <paramref name="reopenOld"/>
    /// brings the previous one back before the error is rethrown.
    /// </summary>
    internal async Task SwapDeviceAsync(Func<Task<IBlockDevice>> openNew, Func<Task<IBlockDevice>> reopenOld)
    {
        await QuiesceAsync();
        try
        {
            var oldSize = Geometry.SizeBytes;
            await Device.FlushAsync(CancellationToken.None);
            await Device.DisposeAsync();
            try
            {
                AttachDevice(await openNew());
            }
            catch
            {
                AttachDevice(await reopenOld());
                throw;
            }
            if (Geometry.SizeBytes != oldSize)
                UnitAttentions.EstablishForAll(Sense.CapacityDataChanged);
        }
        finally
        {
            Resume();
        }
    }

    /// <summary>Resizes through the handler, with the LUN quiesced, and tells every initiator.</summary>
    public async Task ResizeAsync(long newSizeBytes, CancellationToken ct)
    {
        if ((Capabilities & DeviceCapabilities.Resize) == 0)
            throw new InvalidOperationException($"LUN {Name}: its handler cannot resize.");
        await QuiesceAsync();
        try
        {
            await Device.ResizeAsync(newSizeBytes, ct);
        }
        finally
        {
            Resume();
        }
        UnitAttentions.EstablishForAll(Sense.CapacityDataChanged);
    }

    /// <summary>Waits until every command but <paramref name="except"/> that was running has finished.</summary>
    internal Task WaitForOtherCommandsAsync(ScsiTask? except) => taskSet.WaitForOthersAsync(except);

    /// <summary>Aborts tasks in this LUN's task set that match.</summary>
    public int AbortTasks(Func<ScsiTask, bool> match) => taskSet.Abort(match);

    /// <summary>Finds a task in this LUN's task set.</summary>
    public ScsiTask? FindTask(Func<ScsiTask, bool> match) => taskSet.Find(match);

    /// <summary>Completes once no task that <paramref name="match"/> accepts is left in this LUN's task set.</summary>
    public Task WhenNoTaskAsync(Func<ScsiTask, bool> match) => taskSet.WhenAsync(() => taskSet.Find(match) is null);

    /// <summary>
    /// LOGICAL UNIT RESET: abort every task, end PREVENT MEDIUM REMOVAL, drop the SPC-2
    /// reservation (persistent reservations survive a reset) and tell every nexus, the one that
    /// asked for the reset included, as SAM-5 says and libiscsi's MultipathIO.Reset checks. The
    /// code is 29h/00h (POWER ON, RESET, OR BUS DEVICE RESET OCCURRED), the one scsi.md names for
    /// every reset: initiators' reservation helpers (libiscsi's reserve6/release6) retry on it.
    /// </summary>
    public void Reset()
    {
        taskSet.Abort(static _ => true);
        Medium.Reset();
        Reservations.ResetSpc2();
        Copies.DiscardHeld(); // copy results held for RECEIVE COPY RESULTS do not survive a reset
        UnitAttentions.EstablishForAll(Sense.PowerOnReset);
    }

    /// <summary>
    /// I_T nexus loss (for iSCSI, the session is gone: logout, or its connections dropped for
    /// good): its PREVENT MEDIUM REMOVAL and SPC-2 reservation end. Persistent reservations and
    /// registrations are kept, as SPC-4 requires.
    /// </summary>
    public void NexusLost(ItNexus nexus)
    {
        Medium.NexusLost(nexus);
        Reservations.NexusLost(nexus);
    }

    // ---- IDeviceEvents, reported by the handler ----

    void IDeviceEvents.ConnectionLost(string reason)
    {
        Log.Warning("LUN {Lun}: backing store unreachable ({Reason}); answering NOT READY until it returns", Name, reason);
        readyState = 1;
    }

    void IDeviceEvents.ConnectionRestored()
    {
        Log.Information("LUN {Lun}: backing store reachable again", Name);
        readyState = 0;
    }

    void IDeviceEvents.LockLost(string reason)
    {
        Log.Warning("LUN {Lun}: lost its lock ({Reason}); writes are refused", Name, reason);
        readyState = 2;
    }

    void IDeviceEvents.Resized(long newSizeBytes)
    {
        Device.RefreshGeometry();
        Log.Information("LUN {Lun}: the handler reports a new size of {Size} bytes", Name, newSizeBytes);
        UnitAttentions.EstablishForAll(Sense.CapacityDataChanged);
    }
}
