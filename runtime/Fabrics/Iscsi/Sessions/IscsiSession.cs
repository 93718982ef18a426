using HandlerRuntime.Fabrics.Iscsi.Connections;
using HandlerRuntime.Fabrics.Iscsi.Login;
using HandlerRuntime.Fabrics.Iscsi.Protocol;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;
using Serilog;

namespace HandlerRuntime.Fabrics.Iscsi.Sessions;

/// <summary>
/// An iSCSI session (an I_T nexus): its connections, the CmdSN window shared by them,
/// the table of outstanding commands by ITT, and the order in which commands reach the
/// SCSI core. Commands enter the core in CmdSN order once their data is in; a SIMPLE
/// command may pass one still waiting for data, nothing passes an ORDERED one.
/// </summary>
internal sealed class IscsiSession : IThreadPoolWorkItem
{
    private readonly object gate = new();
    private readonly Dictionary<uint, IscsiCommand> tasks = new();
    private readonly Dictionary<uint, IscsiCommand?> held = new();
    private readonly List<IscsiConnection> connections = new();
    // Command objects for reuse, under their own lock: the reader rents and the sender returns
    // them without touching the session lock that every command's ordering takes.
    private readonly object poolGate = new();
    private readonly Stack<IscsiCommand> pool = new();
    private IscsiCommand? head, tail;
    private bool pumping, pumpAgain;
    private uint expCmdSN, maxCmdSN;
    private int outstanding;
    private long buffered;
    private uint nextTtt;
    private bool closed;
    // Those awaiting the end of some commands (abort, logout, close); null while nobody waits,
    // so a command leaving costs one test for them.
    private List<EndWaiter>? waiters;

    public IscsiSession(IscsiFabric fabric, IscsiOptions options, SessionParameters parameters, string initiatorName, ulong isid, ushort tsih,
        ScsiTarget? target, ItNexus? nexus, uint initialCmdSN, ILogger log)
    {
        Fabric = fabric;
        Options = options;
        Parameters = parameters;
        InitiatorName = initiatorName;
        Isid = isid;
        Tsih = tsih;
        Target = target;
        Nexus = nexus;
        Log = log;
        expCmdSN = initialCmdSN;
        maxCmdSN = initialCmdSN + (uint)options.QueueDepth - 1;
        Created = DateTimeOffset.UtcNow;
    }

    public IscsiFabric Fabric { get; }
    public IscsiOptions Options { get; }
    public SessionParameters Parameters { get; }
    public string InitiatorName { get; }
    public ulong Isid { get; }
    public ushort Tsih { get; }
    /// <summary>Null for a discovery session.</summary>
    public ScsiTarget? Target { get; }
    public ItNexus? Nexus { get; }
    public bool Discovery => Target is null;
    public ILogger Log { get; }
    public DateTimeOffset Created { get; }

    public string InitiatorPort => $"{InitiatorName},i,0x{Isid:x12}";

    public bool IsClosed { get { lock (gate) return closed; } }

    public IscsiConnection[] Connections { get { lock (gate) return connections.ToArray(); } }

    // ---- connections ----

    /// <summary>Adds a connection (leading or a further one within MaxConnections); false when the session is full or closed.</summary>
    public bool TryAddConnection(IscsiConnection connection, out IscsiConnection? replaced)
    {
        lock (gate)
        {
            replaced = connections.FirstOrDefault(c => c.Cid == connection.Cid);
            if (closed || (replaced is null && connections.Count >= Parameters.MaxConnections))
                return false;
            if (replaced is not null)
                connections.Remove(replaced);
            connections.Add(connection);
            return true;
        }
    }

    public IscsiConnection? FindConnection(ushort cid)
    {
        lock (gate)
            return connections.FirstOrDefault(c => c.Cid == cid);
    }

    /// <summary>
    /// A connection went away. Its commands are terminated (ERL 0 has no recovery):
    /// those not yet in the core are dropped, those in it are aborted and waited for, so
    /// no buffer is returned while a handler may still use it. The last connection
    /// closes the session.
    /// </summary>
    public async Task ConnectionClosedAsync(IscsiConnection connection)
    {
        bool last;
        lock (gate)
        {
            connections.Remove(connection);
            last = connections.Count == 0;
            if (last)
                closed = true;
        }
        try
        {
            if (last)
                EndNexus(); // at once: the initiator may already be logging in again
            await AbortAsync(c => c.Connection == connection, coreAlso: true);
            if (last && !await WhenEndedAsync(static _ => true, TimeSpan.FromSeconds(60)))
                Log.Warning("iSCSI session {Initiator}: commands still running 60 s after close", InitiatorName);
        }
        finally
        {
            // Whatever failed above, a closed session must not keep its TSIH and its place under maxSessions.
            if (last)
            {
                Fabric.Sessions.Remove(this);
                Log.Information("iSCSI session {Initiator} (ISID 0x{Isid:x12}, TSIH {Tsih}) to {Target} closed", InitiatorName, Isid, Tsih, Target?.Name ?? "discovery");
            }
        }
    }

    private int nexusEnded;

    /// <summary>Whether the peer has closed every connection of this session (its end may not be processed yet).</summary>
    public bool AllConnectionsClosedByPeer()
    {
        lock (gate)
            return connections.Count > 0 && connections.All(c => c.ClosedByPeer);
    }

    /// <summary>Whether <paramref name="connection"/> is the session's only remaining connection.</summary>
    public bool IsLastConnection(IscsiConnection connection)
    {
        lock (gate)
            return connections.Count == 1 && connections.Contains(connection);
    }

    /// <summary>
    /// I_T nexus loss: state the nexus held in the LUs (PREVENT, SPC-2 reservations) ends.
    /// Called once, at the first of logout, reinstatement or the last connection's end, and
    /// before a logout response or a reinstating login completes, so that a new session of the
    /// same nexus (same ISID) never has its own fresh state released by this old one.
    /// </summary>
    public void EndNexus()
    {
        if (Nexus is not null && Interlocked.Exchange(ref nexusEnded, 1) == 0)
            Target?.NexusLost(Nexus);
    }

    /// <summary>Closes every connection (logout of the session, reinstatement, cold reset, shutdown).</summary>
    public void CloseAll(string why)
    {
        IscsiConnection[] all;
        lock (gate)
        {
            closed = true;
            all = connections.ToArray();
        }
        foreach (var c in all)
            c.Close(why);
    }

    // ---- the CmdSN window (RFC 7143 4.2.2.1) ----

    public CmdSNWindow Window()
    {
        lock (gate)
            return WindowLocked();
    }

    private CmdSNWindow WindowLocked()
    {
        var slots = Options.QueueDepth - outstanding;
        if (buffered >= Options.MaxSessionBufferBytes)
            slots = 0;
        var max = expCmdSN - 1 + (uint)Math.Max(0, slots);
        if (Bhs.SnLess(maxCmdSN, max))
            maxCmdSN = max; // never shrinks: the initiator may already use what was advertised
        return new(expCmdSN, maxCmdSN);
    }

    /// <summary>
    /// Takes a non-immediate CmdSN for a PDU that is not a SCSI command (NOP-Out, Text,
    /// Task Management, Logout). False: outside the window or a duplicate, to be ignored.
    /// </summary>
    public bool AcceptCmdSN(uint cmdSN) => Sequence(cmdSN, null);

    /// <summary>Sequences a new command (immediate ones need no CmdSN). False: ignore it.</summary>
    public bool Admit(IscsiCommand cmd)
    {
        lock (gate)
        {
            if (closed)
                return false;
            if (tasks.ContainsKey(cmd.Itt))
                throw new ProtocolException(RejectReason.TaskInProgress, $"ITT 0x{cmd.Itt:x8} is already in use");
            if (!cmd.Immediate && !SequenceLocked(cmd.CmdSN, cmd))
                return false;
            tasks.Add(cmd.Itt, cmd);
            outstanding++;
            if (cmd.DataOut is not null)
                buffered += cmd.DataOut.Array.Length;
            if (cmd.Immediate)
                Append(cmd);
            return true;
        }
    }

    private bool Sequence(uint cmdSN, IscsiCommand? cmd)
    {
        lock (gate)
            return SequenceLocked(cmdSN, cmd);
    }

    private bool SequenceLocked(uint cmdSN, IscsiCommand? cmd)
    {
        if (Bhs.SnLess(cmdSN, expCmdSN) || Bhs.SnLess(maxCmdSN, cmdSN) || held.ContainsKey(cmdSN))
            return false;
        if (cmdSN != expCmdSN)
        {
            held[cmdSN] = cmd; // another connection's earlier command is still on its way
            return true;
        }
        expCmdSN++;
        if (cmd is not null)
            Append(cmd);
        while (held.Remove(expCmdSN, out var next))
        {
            expCmdSN++;
            if (next is not null)
                Append(next);
        }
        return true;
    }

    private void Append(IscsiCommand cmd)
    {
        cmd.Sequenced = true;
        cmd.Prev = tail;
        cmd.Next = null;
        if (tail is null) head = cmd; else tail.Next = cmd;
        tail = cmd;
    }

    private void Unlink(IscsiCommand cmd)
    {
        if (!cmd.Sequenced)
            return;
        if (cmd.Prev is null) head = cmd.Next; else cmd.Prev.Next = cmd.Next;
        if (cmd.Next is null) tail = cmd.Prev; else cmd.Next.Prev = cmd.Prev;
        cmd.Prev = cmd.Next = null;
        cmd.Sequenced = false;
    }

    // ---- commands ----

    public IscsiCommand Rent()
    {
        lock (poolGate)
            if (pool.TryPop(out var c))
            {
                c.MarkRented();
                return c;
            }
        var cmd = new IscsiCommand(this, Parameters.MaxOutstandingR2T);
        cmd.Reset();
        return cmd;
    }

    /// <summary>A Target Transfer Tag for an R2T, unique in the session and never 0xffffffff.</summary>
    public uint NextTtt()
    {
        lock (gate)
        {
            if (++nextTtt == Bhs.ReservedTag)
                nextTtt = 1;
            return nextTtt;
        }
    }

    /// <summary>
    /// Delivers every command whose turn has come to the SCSI core, in order. One thread
    /// delivers at a time. On a network thread (inline socket completions) only READ and
    /// WRITE to a non-blocking device run here; at the first other command the rest of the
    /// delivery moves to the thread pool, so the order into the task set stays the CmdSN order.
    /// </summary>
    public void Pump()
    {
        lock (gate)
        {
            if (pumping)
            {
                pumpAgain = true;
                return;
            }
            pumping = true;
        }
        while (true)
        {
            IscsiCommand? next;
            lock (gate)
            {
                next = NextDeliverable();
                if (next is null)
                {
                    if (pumpAgain)
                    {
                        pumpAgain = false;
                        continue;
                    }
                    pumping = false;
                    return;
                }
                if (!NetworkThreads.OnThreadPool && !MayRunOnNetworkThread(next))
                {
                    // This one, and everything after it, is delivered from the thread pool.
                    pumping = false;
                    pumpAgain = false;
                    next = null;
                }
                else
                {
                    Unlink(next);
                    next.State = CommandState.Executing;
                    next.Task.DataOutBuffer = next.DataOut;
                    next.Task.DataOutLength = next.DataOut is null ? 0 : next.Needed;
                    next.DataOut = null;
                }
            }
            if (next is null)
            {
                ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
                return;
            }
            next.Execute(Target!);
        }
    }

    void IThreadPoolWorkItem.Execute()
    {
        // Nothing may escape a work item: it would end the process, every LUN with it.
        try
        {
            Pump();
        }
        catch (Exception e)
        {
            Log.Error(e, "iSCSI session {Initiator}: delivering commands failed; closing the session", InitiatorName);
            CloseAll("internal error");
        }
    }

    /// <summary>A command the table lets run inline (READ, WRITE) to a LUN whose device never waits on the caller's thread.</summary>
    private bool MayRunOnNetworkThread(IscsiCommand cmd)
        => cmd.Command is { } command && (command.Flags & CommandFlags.MayRunInline) != 0
           && Target?.Lookup(cmd.Task.Lun) is { } lun && (lun.Capabilities & DeviceCapabilities.NonBlocking) != 0;

    private IscsiCommand? NextDeliverable()
    {
        var blocked = false;
        for (var c = head; c is not null; c = c.Next)
        {
            if (c.Task.Attribute == TaskAttribute.HeadOfQueue)
            {
                if (c.DataComplete)
                    return c;
                continue;
            }
            if (blocked)
                continue;
            if (c.Task.Attribute == TaskAttribute.Ordered)
            {
                if (c == head && c.DataComplete)
                    return c;
                blocked = true; // nothing behind an ORDERED command may pass it
                continue;
            }
            if (c.DataComplete)
                return c;
        }
        return null;
    }

    /// <summary>
    /// The core finished a command: it leaves the session's window and its response is queued,
    /// unless it was aborted or its connection is gone.
    /// </summary>
    /// <remarks>
    /// This is the one time a response takes the session lock. Leaving the window here, not
    /// when the sender gets to the response, is safe: the initiator cannot reuse the ITT or
    /// count on the slot before it has the response, an abort that finds the command gone
    /// answers as it would for one already responding, and a logout waiting for the command is
    /// told only once the response is queued ahead of its own. The window the response
    /// advertises is taken in the same lock, with this command's slot already free; both
    /// numbers only grow, so it is still true when the sender writes it later (an initiator
    /// keeps the larger values it has seen, RFC 7143 4.2.2.1). Returning the object to the
    /// pool after the send takes only the pool's lock.
    /// </remarks>
    public void Executed(IscsiCommand cmd)
    {
        bool respond;
        EndWaiter? ended = null;
        lock (gate)
        {
            respond = !cmd.Aborted && !cmd.Task.Aborted && !cmd.Connection.IsClosed;
            LeaveLocked(cmd, ref ended);
            if (respond)
            {
                cmd.State = CommandState.Responding;
                cmd.Window = WindowLocked();
            }
        }
        if (!respond || !cmd.Connection.Sender.EnqueueResponse(cmd))
            Recycle(cmd);
        Signal(ended);
    }

    /// <summary>The response is on the wire (or was dropped): the command object goes back to the pool.</summary>
    public void Recycle(IscsiCommand cmd)
    {
        // A command completed twice would sit in the pool twice and carry two initiators'
        // commands at once; refuse the second return loudly instead.
        if (!cmd.TryMarkPooled())
        {
            Log.Error("iSCSI session {Initiator}: a command object was returned twice (ITT 0x{Itt:x8}); the second return is ignored", InitiatorName, cmd.Itt);
            return;
        }
        cmd.Reset();
        lock (poolGate)
            if (pool.Count < Options.QueueDepth * 2)
                pool.Push(cmd);
    }

    /// <summary>Ends a command without a response.</summary>
    public void Retire(IscsiCommand cmd)
    {
        EndWaiter? ended = null;
        lock (gate)
            LeaveLocked(cmd, ref ended);
        Recycle(cmd);
        Signal(ended);
    }

    /// <summary>The command leaves the task table, the command window and the delivery order; waiters whose last command it was are collected in <paramref name="ended"/>.</summary>
    private void LeaveLocked(IscsiCommand cmd, ref EndWaiter? ended)
    {
        if (tasks.Remove(cmd.Itt, out var t) && t == cmd)
        {
            outstanding--;
            if (cmd.Task.DataOutBuffer is { } b)
                buffered -= b.Array.Length;
            else if (cmd.DataOut is { } d)
                buffered -= d.Array.Length;
            if (waiters is not null)
                EndedLocked(cmd, ref ended);
        }
        else if (t is not null)
        {
            tasks[t.Itt] = t; // a different command owns this ITT; leave it
        }
        if (!cmd.Sequenced && !cmd.Immediate && held.TryGetValue(cmd.CmdSN, out var h) && h == cmd)
            held[cmd.CmdSN] = null; // its CmdSN stays consumed; the object goes back to the pool
        Unlink(cmd);
    }

    // ---- waiting for commands to end, without polling ----

    /// <summary>Someone waiting for a set of commands to leave the task table.</summary>
    private sealed class EndWaiter(HashSet<IscsiCommand> pending)
    {
        public readonly HashSet<IscsiCommand> Pending = pending;
        public readonly TaskCompletionSource Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        /// <summary>Links the waiters one leaving command completed, so they are told after the lock.</summary>
        public EndWaiter? NextEnded;
    }

    private void EndedLocked(IscsiCommand cmd, ref EndWaiter? ended)
    {
        var list = waiters!;
        for (var i = list.Count - 1; i >= 0; i--)
        {
            var w = list[i];
            if (w.Pending.Remove(cmd) && w.Pending.Count == 0)
            {
                list.RemoveAt(i);
                w.NextEnded = ended;
                ended = w;
            }
        }
        if (list.Count == 0)
            waiters = null;
    }

    private static void Signal(EndWaiter? ended)
    {
        for (; ended is not null; ended = ended.NextEnded)
            ended.Done.TrySetResult();
    }

    /// <summary>Registers a waiter for <paramref name="commands"/>, all in the task table now; null when there are none.</summary>
    private EndWaiter? WaitLocked(HashSet<IscsiCommand>? commands)
    {
        if (commands is null || commands.Count == 0)
            return null;
        var w = new EndWaiter(commands);
        (waiters ??= new()).Add(w);
        return w;
    }

    /// <summary>Waits for <paramref name="w"/>; false when <paramref name="timeout"/> passed first (the waiter is then withdrawn).</summary>
    private async Task<bool> AwaitAsync(EndWaiter? w, TimeSpan timeout)
    {
        if (w is null)
            return true;
        try
        {
            await w.Done.Task.WaitAsync(timeout);
            return true;
        }
        catch (TimeoutException)
        {
            lock (gate)
            {
                if (waiters is { } list && list.Remove(w) && list.Count == 0)
                    waiters = null;
            }
            return false;
        }
    }

    /// <summary>
    /// Completes when every command that matches <paramref name="match"/> now has left the
    /// session (ended, answered or dropped); false when <paramref name="timeout"/> passed first.
    /// Commands that arrive later are not waited for. Costs nothing unless someone waits.
    /// </summary>
    public Task<bool> WhenEndedAsync(Func<IscsiCommand, bool> match, TimeSpan timeout)
    {
        EndWaiter? w;
        lock (gate)
        {
            HashSet<IscsiCommand>? pending = null;
            foreach (var c in tasks.Values)
                if (match(c))
                    (pending ??= new()).Add(c);
            w = WaitLocked(pending);
        }
        return w is null ? Task.FromResult(true) : AwaitAsync(w, timeout);
    }

    // ---- task management ----

    /// <summary>
    /// Aborts this session's commands that match and have no response queued yet. Those
    /// still gathering data are dropped at once; those in the core are aborted there
    /// (when <paramref name="coreAlso"/>) and awaited. Returns how many were aborted.
    /// </summary>
    public async Task<int> AbortAsync(Func<IscsiCommand, bool> match, bool coreAlso)
    {
        var dropped = new List<IscsiCommand>();
        var inCore = new List<IscsiCommand>();
        EndWaiter? w;
        lock (gate)
        {
            foreach (var c in tasks.Values)
            {
                if (c.Aborted || c.State == CommandState.Responding || !match(c))
                    continue;
                c.Aborted = true;
                if (c.State == CommandState.Receiving && c.ReaderBusy)
                    c.RetireAfterRead = true;
                else if (c.State == CommandState.Receiving)
                    dropped.Add(c);
                else
                    inCore.Add(c);
            }
            // Registered in the same lock that found them, so none can end unnoticed in between.
            w = WaitLocked(inCore.Count == 0 ? null : new HashSet<IscsiCommand>(inCore));
        }
        foreach (var c in dropped)
            Retire(c);
        if (coreAlso)
            foreach (var c in inCore)
                c.Task.RunningOn?.AbortTasks(t => t == c.Task);
        if (!await AwaitAsync(w, AbortTimeout))
            Log.Warning("iSCSI session {Initiator}: aborted commands did not finish within {Seconds} s", InitiatorName, AbortTimeout.TotalSeconds);
        return dropped.Count + inCore.Count;
    }

    /// <summary>How long task management and connection ends wait for aborted commands to leave the core.</summary>
    public static readonly TimeSpan AbortTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The command a Data-Out belongs to, marked busy for the reader; null when there is
    /// none still gathering data on <paramref name="connection"/> (aborted tasks' late data is dropped).
    /// </summary>
    public IscsiCommand? BeginDataOut(uint itt, IscsiConnection connection)
    {
        lock (gate)
        {
            if (!tasks.TryGetValue(itt, out var cmd) || cmd.Aborted || cmd.State != CommandState.Receiving || cmd.Connection != connection)
                return null;
            cmd.ReaderBusy = true;
            return cmd;
        }
    }

    /// <summary>
    /// The reader is done with <paramref name="cmd"/>. False when the command has left the
    /// reader's hands: an abort came meanwhile (it is retired), or <paramref name="fault"/>
    /// ends it, a data sequence error, with CHECK CONDITION without reaching the core.
    /// </summary>
    /// <remarks>
    /// The fault takes the command out of delivery in the same lock that clears
    /// <see cref="IscsiCommand.ReaderBusy"/>: once that flag is clear, a command whose data is
    /// complete may be delivered by a pump on another thread, and failing it afterwards would
    /// complete it twice (seen under a fuzzing client: a command recycled while still running).
    /// </remarks>
    public bool EndRead(IscsiCommand cmd, SenseData? fault = null)
    {
        bool retire;
        lock (gate)
        {
            retire = cmd.RetireAfterRead;
            if (!retire && fault is not null)
            {
                Unlink(cmd);
                cmd.State = CommandState.Executing;
            }
            cmd.ReaderBusy = false;
        }
        if (retire)
        {
            Retire(cmd);
            return false;
        }
        if (fault is { } sense)
        {
            cmd.Task.SetSense(sense, descriptorFormat: false);
            Executed(cmd);
            return false;
        }
        return true;
    }

    /// <summary>Waits until the commands that match now have ended and their responses are queued (before a logout response).</summary>
    public Task WaitIdleAsync(Func<IscsiCommand, bool> match, TimeSpan timeout) => WhenEndedAsync(match, timeout);

    /// <summary>The command an ABORT TASK names, if it can still be aborted.</summary>
    public IscsiCommand? FindAbortable(uint itt)
    {
        lock (gate)
            return tasks.TryGetValue(itt, out var c) && !c.Aborted && c.State != CommandState.Responding ? c : null;
    }

    public SessionInfo Describe()
    {
        var conns = Connections;
        var first = conns.FirstOrDefault();
        var (exp, max) = Window();
        int count;
        lock (gate)
            count = outstanding;
        return new SessionInfo("iscsi", Target?.Name ?? "(discovery)", InitiatorName, InitiatorPort,
            conns.Select(c => c.RemoteEndPoint).ToList(),
            first?.Parameters.HeaderDigest == true ? "CRC32C" : "None",
            first?.Parameters.DataDigest == true ? "CRC32C" : "None",
            new Dictionary<string, string>
            {
                ["tsih"] = Tsih.ToString(),
                ["type"] = Discovery ? "discovery" : "normal",
                ["expCmdSN"] = exp.ToString(),
                ["maxCmdSN"] = max.ToString(),
                ["outstanding"] = count.ToString(),
                ["maxBurstLength"] = Parameters.MaxBurstLength.ToString(),
                ["firstBurstLength"] = Parameters.FirstBurstLength.ToString(),
                ["initialR2T"] = Parameters.InitialR2T ? "Yes" : "No",
                ["immediateData"] = Parameters.ImmediateData ? "Yes" : "No",
                ["maxConnections"] = Parameters.MaxConnections.ToString(),
                ["since"] = Created.ToString("u"),
            });
    }
}
