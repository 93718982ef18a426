using System.Text.RegularExpressions;
using HandlerRuntime.Luns;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;
using Serilog;

namespace HandlerRuntime.Fabrics.Tcmu;

/// <summary>
/// One TCMU device this runtime serves: its UIO mapping and command ring, the LUN that a
/// handler opened for it (named after the configfs device, in a target of its own, reached by
/// one I_T nexus: LIO keeps the initiators' identities, reservations and REPORT LUNS to itself),
/// and the commands in flight. Entries are consumed on the event loop thread; commands
/// complete on whatever thread finishes them, under the completion lock, and the kernel is told
/// once per run of completions (one write for a whole <see cref="CompletionBatch"/> or drain).
/// </summary>
internal sealed partial class TcmuDevice : IDeferredSend
{
    public const string FabricName = "tcmu";

    private readonly TcmuFabric fabric;
    private readonly UioMapping uio;
    private readonly CommandRing ring;
    private readonly object completionLock = new();
    private readonly object notifyLock = new();
    private readonly Stack<TcmuCommand> pool = new();
    private readonly ScsiTarget target;
    private readonly ItNexus nexus;
    private volatile ScsiLun? lun;
    private int blockSize;
    private int inFlight;
    private int notifyPending;
    private long commands;
    private bool closed;
    private volatile bool stopping;
    private TaskCompletionSource? drained;

    private TcmuDevice(TcmuFabric fabric, TcmuDeviceName name, UioMapping uio, CommandRing ring)
    {
        this.fabric = fabric;
        DeviceName = name;
        this.uio = uio;
        this.ring = ring;
        Cfgstring = name.Cfgstring!;
        LunName = LunNameFor(name);
        target = new ScsiTarget($"tcmu:{name.ConfigFsName}");
        var port = new TargetPort(target.Name, target.Name, 1, 1, NoSpecificProtocol);
        nexus = fabric.Nexuses.Get($"lio,{name.ConfigFsName}", "lio", port);
        Log = fabric.Log;
    }

    /// <summary>SPC-4 protocol identifier Fh: LIO keeps the real transport to itself.</summary>
    private const byte NoSpecificProtocol = 0x0F;

    public TcmuDeviceName DeviceName { get; }

    /// <summary>The configfs name below core/, e.g. user_1/disk0.</summary>
    public string Name => DeviceName.ConfigFsName;

    public string LunName { get; }

    public string Cfgstring { get; private set; }

    public int Minor => uio.Minor;

    internal ILogger Log { get; }

    [GeneratedRegex("[^A-Za-z0-9._:-]")]
    private static partial Regex NotInLunNames();

    /// <summary>The LUN's name: the configfs device's name, made a valid LUN name.</summary>
    public static string LunNameFor(TcmuDeviceName name)
    {
        var n = NotInLunNames().Replace(name.Name, "_");
        if (!char.IsAsciiLetterOrDigit(n[0]))
            n = "d" + n;
        return n.Length > 64 ? n[..64] : n;
    }

    /// <summary>
    /// Attaches to a device: with <paramref name="reopen"/> (it existed before this process, and a
    /// dead daemon may have left commands on its ring) the ring is blocked and reset first, as
    /// libtcmu does, so those commands go back to the initiator as BUSY and are retried; then the
    /// UIO device is mapped, the handler opens the LUN, and the device is unblocked.
    /// </summary>
    public static async Task<TcmuDevice> AttachAsync(TcmuFabric fabric, int minor, TcmuDeviceName name, bool reopen, CancellationToken ct)
    {
        var blocked = false;
        if (reopen && TcmuConfigFs.HasAction(name, "block_dev"))
        {
            if (TcmuConfigFs.Action(name, "block_dev", "1") is { } e)
                fabric.Log.Warning("TCMU {Device}: block_dev failed: {Reason}", name.ConfigFsName, e);
            else
                blocked = true;
            if (TcmuConfigFs.HasAction(name, "reset_ring") && TcmuConfigFs.Action(name, "reset_ring", "1") is { } r)
                fabric.Log.Warning("TCMU {Device}: reset_ring failed: {Reason}", name.ConfigFsName, r);
        }
        UioMapping? uio = null;
        try
        {
            uio = UioMapping.Open(minor);
            var ring = uio.CreateRing();
            ring.StartAtTail();
            var device = new TcmuDevice(fabric, name, uio, ring);
            await device.OpenLunAsync(device.Cfgstring, ct);
            fabric.Loop.Add(uio.Fd, device.OnReady);
            fabric.Log.Information("TCMU {Device}: serving {Cfgstring} as LUN {Lun} on {Uio} (ring {Ring} KiB, data area {Data} MiB, capabilities 0x{Caps:x}){Reattached}",
                name.ConfigFsName, device.Cfgstring, device.LunName, uio.DevicePath, ring.RingSize / 1024, (uio.Size - ring.DataOffset) >> 20, ring.Capabilities,
                reopen ? ", reattached" : "");
            return device;
        }
        catch
        {
            uio?.Dispose();
            throw;
        }
        finally
        {
            if (blocked && TcmuConfigFs.Action(name, "block_dev", "0") is { } e)
                fabric.Log.Warning("TCMU {Device}: unblocking failed: {Reason}", name.ConfigFsName, e);
        }
    }

    private async Task OpenLunAsync(string cfgstring, CancellationToken ct)
    {
        var size = TcmuConfigFs.ReadSize(DeviceName) ?? 0;
        blockSize = TcmuConfigFs.ReadAttribute(DeviceName, "hw_block_size") ?? 512;
        var writeCache = TcmuConfigFs.ReadAttribute(DeviceName, "emulate_write_cache") is not 0;
        var definition = new LunDefinition(LunName, cfgstring) { Size = size, BlockSize = blockSize, WriteCache = writeCache };
        var entry = await fabric.Luns.AttachFabricLunAsync(definition, target, FabricName, ct);
        var l = entry.Lun;
        if (TcmuConfigFs.ReadAttribute(DeviceName, "hw_max_sectors") is > 0 and var maxSectors)
            l.FabricMaxTransferBlocks = maxSectors;
        // LIO has its own unit attentions for its initiators; a fresh LU's POWER ON would only
        // fail the first command after every (re)start of this runtime.
        l.UnitAttentions.Clear(nexus);
        lun = l;
    }

    // ---- the ring, on the event loop thread ----

    private void OnReady(short revents)
    {
        if ((revents & (Libc.PollErr | Libc.PollHup | Libc.PollNval)) != 0)
        {
            Log.Error("TCMU {Device}: {Uio} reports an error (events 0x{Events:x}); no longer serving it", Name, uio.DevicePath, revents);
            _ = fabric.Loop.RemoveAsync(uio.Fd);
            return;
        }
        uio.ClearEvent();
        Drain();
    }

    /// <summary>Consumes every entry the kernel has produced. Completions of commands that finish here leave in one write.</summary>
    private void Drain()
    {
        using var batch = CompletionBatch.Begin();
        try
        {
            while (ring.TryPeek(out var entry))
            {
                switch (entry.Op)
                {
                    case EntryHeader.OpPad:
                        ring.Advance(entry);
                        break;
                    case EntryHeader.OpTmr:
                        HandleTmr(entry);
                        ring.Advance(entry);
                        break;
                    case EntryHeader.OpCmd:
                        var cmd = Rent();
                        try
                        {
                            cmd.Read(ring, entry, blockSize);
                        }
                        catch
                        {
                            Return(cmd);
                            throw;
                        }
                        ring.Advance(entry); // before dispatch: a command completing at once completes at cmd_tail, behind it
                        Dispatch(cmd);
                        break;
                    default:
                        Log.Warning("TCMU {Device}: ring entry with unknown opcode {Op} skipped", Name, entry.Op);
                        ring.MarkUnknown(entry);
                        ring.Advance(entry);
                        break;
                }
            }
        }
        catch (RingCorruptException e)
        {
            Log.Error("TCMU {Device}: the command ring is corrupt ({Reason}); no longer serving it. Write 1 to action/reset_ring and restart hrt to recover.", Name, e.Message);
            _ = fabric.Loop.RemoveAsync(uio.Fd);
        }
    }

    private TcmuCommand Rent()
    {
        lock (pool)
            if (pool.TryPop(out var c))
                return c;
        return new TcmuCommand(this);
    }

    private void Return(TcmuCommand cmd)
    {
        cmd.Reset();
        lock (pool)
            if (pool.Count < 1024)
                pool.Push(cmd);
    }

    private void Dispatch(TcmuCommand cmd)
    {
        Interlocked.Increment(ref inFlight);
        Interlocked.Increment(ref commands);
        var l = lun;
        if (l is null)
        {
            // dev_config is being applied: the initiator retries.
            cmd.Task.Status = ScsiStatus.Busy;
            Complete(cmd);
            return;
        }
        cmd.Prepare(ring, nexus, l);
        if (MayRunOnLoop(cmd.Task, l))
            cmd.Execute();
        else
            ThreadPool.UnsafeQueueUserWorkItem(cmd, preferLocal: false);
    }

    /// <summary>READ and WRITE (6/10/12/16) on a device that never waits on the caller's thread run on the loop; the rest on the pool.</summary>
    private static bool MayRunOnLoop(ScsiTask task, ScsiLun l)
    {
        var cdb = task.CdbSpan;
        return cdb[0] is 0x08 or 0x28 or 0xA8 or 0x88 or 0x0A or 0x2A or 0xAA or 0x8A
            && (l.Capabilities & DeviceCapabilities.NonBlocking) != 0;
    }

    private void HandleTmr(in RingEntry entry)
    {
        var type = ring.TmrType(entry);
        var ids = ring.TmrCommandIds(entry).ToArray();
        var l = lun;
        if (l is null)
            return;
        var aborted = 0;
        switch (type)
        {
            case TmrEntry.LunReset or TmrEntry.TargetWarmReset or TmrEntry.TargetColdReset:
                aborted = l.AbortTasks(static _ => true);
                l.Reset();
                // LIO tells its initiators of the reset itself; ours would be a second, stale notice.
                l.UnitAttentions.Withdraw(nexus, Sense.PowerOnReset);
                break;
            default:
                aborted = l.AbortTasks(t => Array.IndexOf(ids, (ushort)t.Tag) >= 0);
                break;
        }
        Log.Information("TCMU {Device}: {Tmr} for {Listed} command(s) on the ring; {Aborted} aborted in the SCSI core", Name, TmrEntry.Name(type), ids.Length, aborted);
    }

    // ---- completion, on any thread ----

    /// <summary>Writes a command's data-in, status and sense into the ring at cmd_tail, and has the kernel collect it.</summary>
    internal void Complete(TcmuCommand cmd)
    {
        var t = cmd.Task;
        var produced = cmd.DeliverDataIn(ring);
        var status = (byte)t.Status;
        var readLength = t.Status == ScsiStatus.Good && cmd.DataInBytes > 0 && produced < cmd.DataInBytes && ring.ReadLenSupported ? produced : -1;
        bool written;
        lock (completionLock)
            written = ring.Complete(cmd.CmdId, status, t.Status == ScsiStatus.CheckCondition ? t.SenseBytes : default, readLength);
        if (!written)
            Log.Error("TCMU {Device}: command {CmdId} completed with no consumed entry left at cmd_tail; the ring may now be broken", Name, cmd.CmdId);
        RequestNotify();
        Return(cmd);
        if (Interlocked.Decrement(ref inFlight) == 0 && stopping)
            drained?.TrySetResult();
    }

    private void RequestNotify()
    {
        // One write tells the kernel of every completion before it: skip it when another is due.
        if (Interlocked.Exchange(ref notifyPending, 1) == 1)
            return;
        if (!CompletionBatch.TryDefer(this))
            Notify();
    }

    void IDeferredSend.Send() => Notify();

    private void Notify()
    {
        Interlocked.Exchange(ref notifyPending, 0); // completions after this point need a write of their own
        lock (notifyLock)
            if (!closed)
                uio.NotifyCompletions();
    }

    // ---- reconfiguration and removal ----

    /// <summary>Applies a RECONFIG_DEVICE: 0, or a negative errno that fails the configfs write.</summary>
    public async Task<int> ReconfigAsync(TcmuDeviceEvent e)
    {
        if (e.DevSize is { } size)
        {
            try
            {
                await fabric.Luns.ResizeFabricLunAsync(LunName, (long)size, CancellationToken.None);
                Log.Information("TCMU {Device}: dev_size {Size} applied", Name, size);
                return 0;
            }
            catch (LunException x)
            {
                Log.Error("TCMU {Device}: dev_size {Size} refused: {Reason}", Name, size, x.Message);
                return x.Message.Contains("cannot resize", StringComparison.Ordinal) ? -Libc.EOPNOTSUPP : -Libc.EINVAL;
            }
        }
        if (e.WriteCache is { } wce)
        {
            if (lun is { } l)
                l.Mode.WriteCacheEnabled = wce;
            Log.Information("TCMU {Device}: emulate_write_cache {Value} applied", Name, wce ? 1 : 0);
            return 0;
        }
        if (e.DevConfig is { } cfg)
            return await ChangeConfigAsync(cfg);
        return -Libc.EINVAL;
    }

    private async Task<int> ChangeConfigAsync(string cfgstring)
    {
        var check = fabric.Luns.CheckConfig(cfgstring);
        if (!check.IsValid)
        {
            Log.Error("TCMU {Device}: dev_config {Cfgstring} refused: {Reason}", Name, cfgstring, check.Reason);
            return -Libc.EINVAL;
        }
        lun = null; // commands meanwhile are answered BUSY and retried
        await fabric.Luns.DetachFabricLunAsync(LunName, removeState: false);
        try
        {
            await OpenLunAsync(cfgstring, CancellationToken.None);
            Cfgstring = cfgstring;
            Log.Information("TCMU {Device}: dev_config {Cfgstring} applied", Name, cfgstring);
            return 0;
        }
        catch (LunException x)
        {
            Log.Error("TCMU {Device}: dev_config {Cfgstring} failed ({Reason}); reopening {Old}", Name, cfgstring, x.Message, Cfgstring);
            try
            {
                await OpenLunAsync(Cfgstring, CancellationToken.None);
            }
            catch (LunException again)
            {
                Log.Error("TCMU {Device}: {Old} did not reopen either: {Reason}; commands are answered BUSY", Name, Cfgstring, again.Message);
            }
            return -Libc.EINVAL;
        }
    }

    /// <summary>
    /// Stops serving. <paramref name="orderly"/> (this runtime stops; the device stays): the ring is
    /// blocked so new commands get BUSY, what is already on it is consumed and finished, and it is
    /// unblocked once closed, for the next daemon. Otherwise (the device is being removed) the ring
    /// is just closed when the commands in flight have finished.
    /// </summary>
    public async Task StopAsync(bool orderly)
    {
        var blocked = orderly && TcmuConfigFs.HasAction(DeviceName, "block_dev") && TcmuConfigFs.Action(DeviceName, "block_dev", "1") is null;
        await fabric.Loop.InvokeAsync(() =>
        {
            fabric.Loop.RemoveAsync(uio.Fd);
            if (orderly)
                Drain();
            stopping = true;
            drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (Volatile.Read(ref inFlight) == 0)
                drained.TrySetResult();
        });
        try
        {
            await drained!.Task.WaitAsync(TimeSpan.FromSeconds(60));
        }
        catch (TimeoutException)
        {
            Log.Warning("TCMU {Device}: {Count} command(s) still running after 60 s; closing anyway", Name, Volatile.Read(ref inFlight));
        }
        await fabric.Luns.DetachFabricLunAsync(LunName, removeState: !orderly);
        lock (notifyLock)
        {
            closed = true;
            uio.Dispose();
        }
        if (blocked && TcmuConfigFs.Action(DeviceName, "block_dev", "0") is { } e)
            Log.Warning("TCMU {Device}: unblocking failed: {Reason}", Name, e);
        Log.Information("TCMU {Device}: no longer served ({Why})", Name, orderly ? "hrt stopping" : "removed");
    }

    public SessionInfo Describe() => new(FabricName, target.Name, "LIO", nexus.InitiatorPort, [uio.DevicePath], "n/a", "n/a",
        new Dictionary<string, string>
        {
            ["cfgstring"] = Cfgstring,
            ["lun"] = LunName,
            ["ring"] = $"{ring.RingSize} bytes",
            ["dataArea"] = $"{uio.Size - ring.DataOffset} bytes",
            ["commands"] = Interlocked.Read(ref commands).ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["inFlight"] = Volatile.Read(ref inFlight).ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
}
