using System.Runtime.CompilerServices;
using HandlerRuntime.Buffers;
using HandlerRuntime.Fabrics.Iscsi.Connections;
using HandlerRuntime.Fabrics.Iscsi.Protocol;
using HandlerRuntime.Scsi;

namespace HandlerRuntime.Fabrics.Iscsi.Sessions;

/// <summary>Where a command is in its life on the target.</summary>
internal enum CommandState : byte
{
    /// <summary>Waiting for immediate, unsolicited or solicited (R2T) data.</summary>
    Receiving,
    /// <summary>In the SCSI core.</summary>
    Executing,
    /// <summary>Its response is queued or being sent; task management can no longer abort it.</summary>
    Responding,
}

/// <summary>One outstanding R2T of a command (RFC 7143 11.8).</summary>
internal struct R2TState
{
    public bool Active;
    public uint Ttt;
    public int Offset;
    public int Length;
    public int Next;
    public uint NextDataSN;
}

/// <summary>
/// One SCSI command as the iSCSI layer tracks it: its tags and sequence numbers, the
/// data-out it still needs (immediate, unsolicited, then solicited by R2T), its place in
/// the session's delivery order, and the pooled <see cref="ScsiTask"/> that carries it
/// through the SCSI core. Objects are pooled per session and reused.
/// </summary>
internal sealed class IscsiCommand
{
    private readonly Action onExecuted;
    private ConfiguredValueTaskAwaitable.ConfiguredValueTaskAwaiter pending;
    private int pooled;

    public IscsiCommand(IscsiSession session, int maxOutstandingR2T)
    {
        Session = session;
        R2Ts = new R2TState[maxOutstandingR2T];
        onExecuted = OnExecuted;
    }

    public IscsiSession Session { get; }
    public ScsiTask Task { get; } = new();
    public IscsiConnection Connection = null!;

    public uint Itt;
    public uint CmdSN;
    public bool Immediate;
    /// <summary>The LUN field exactly as received, echoed in R2T and Data-In.</summary>
    public ulong LunField;
    public bool Read;
    public bool Write;
    /// <summary>The command table's entry for the CDB, looked up once on receipt; null for a command the core does not know.</summary>
    public CommandInfo? Command;
    /// <summary>Expected Data Transfer Length from the initiator.</summary>
    public int Edtl;
    /// <summary>Data-out bytes the CDB implies (SPDTL), or -1 when the command is unknown here.</summary>
    public long Spdtl;
    /// <summary>Data-out bytes gathered for the core: min(EDTL, SPDTL).</summary>
    public int Needed;
    public BufferPool.PooledBuffer? DataOut;

    // unsolicited data (immediate data plus Data-Out with TTT 0xffffffff)
    public bool UnsolicitedDone;
    public int UnsolicitedEnd;
    public int UnsolicitedNext;
    public uint UnsolicitedDataSN;

    // solicited data
    public int NextR2TOffset;
    public int GapStart;
    public int GapEnd;
    public uint NextR2TSN;
    public int OutstandingR2Ts;
    public readonly R2TState[] R2Ts;

    public CommandState State;
    public bool Sequenced;
    public bool Aborted;
    /// <summary>The connection's reader is moving data into this command; an abort then leaves the retiring to it.</summary>
    public bool ReaderBusy;
    public bool RetireAfterRead;
    public IscsiCommand? Prev;
    public IscsiCommand? Next;

    /// <summary>Data-In PDUs sent, for ExpDataSN in the response.</summary>
    public uint DataInPdus;

    /// <summary>The command window its response advertises, taken when it left the session's window.</summary>
    public CmdSNWindow Window;

    /// <summary>In the session's pool: not in use by any command.</summary>
    public bool Pooled => Volatile.Read(ref pooled) != 0;

    /// <summary>
    /// Marks the object as returned to the pool; false when it already was. Atomic, so that of
    /// two threads completing one command (a bug) exactly one returns it.
    /// </summary>
    public bool TryMarkPooled() => Interlocked.Exchange(ref pooled, 1) == 0;

    /// <summary>Taken from the pool for a new command.</summary>
    public void MarkRented() => Volatile.Write(ref pooled, 0);

    /// <summary>All data-out is in and nothing more is owed by the initiator.</summary>
    public bool DataComplete => !ReaderBusy && !Aborted && UnsolicitedDone && OutstandingR2Ts == 0 && NextR2TOffset >= Needed && GapStart >= GapEnd;

    /// <summary>Runs the task in the core; its completion comes back through the session, on whatever thread finishes it.</summary>
    public void Execute(ScsiTarget target)
    {
        ValueTask run;
        try
        {
            run = target.ExecuteAsync(Task);
        }
        catch (Exception e)
        {
            Session.Log.Error(e, "iSCSI: the SCSI core threw for ITT {Itt}", Itt);
            Task.Status = Sdk.ScsiStatus.Busy;
            Session.Executed(this);
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
            Session.Log.Error(e, "iSCSI: the SCSI core failed ITT {Itt}", Itt);
            Task.Status = Sdk.ScsiStatus.Busy;
        }
        try
        {
            Session.Executed(this);
        }
        catch (Exception e) // on a handler's thread: escaping would end the process
        {
            Session.Log.Error(e, "iSCSI: completing ITT 0x{Itt:x8} failed; closing the session", Itt);
            Session.CloseAll("internal error");
        }
    }

    public R2TState? FindR2T(uint ttt, out int index)
    {
        for (var i = 0; i < R2Ts.Length; i++)
            if (R2Ts[i].Active && R2Ts[i].Ttt == ttt)
            {
                index = i;
                return R2Ts[i];
            }
        index = -1;
        return null;
    }

    /// <summary>Clears every field for reuse; the task's buffers go back to the pool.</summary>
    public void Reset()
    {
        Task.Reset();
        DataOut?.Dispose();
        DataOut = null;
        Connection = null!;
        Itt = CmdSN = 0;
        Immediate = Read = Write = false;
        Command = null;
        LunField = 0;
        Edtl = Needed = 0;
        Spdtl = -1;
        UnsolicitedDone = false;
        UnsolicitedEnd = UnsolicitedNext = 0;
        UnsolicitedDataSN = 0;
        NextR2TOffset = GapStart = GapEnd = 0;
        NextR2TSN = 0;
        OutstandingR2Ts = 0;
        Array.Clear(R2Ts);
        State = CommandState.Receiving;
        Sequenced = Aborted = ReaderBusy = RetireAfterRead = false;
        Prev = Next = null;
        DataInPdus = 0;
        Window = default;
    }
}
