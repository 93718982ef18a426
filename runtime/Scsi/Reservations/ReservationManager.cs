using HandlerRuntime.Sdk;
using Serilog;

namespace HandlerRuntime.Scsi.Reservations;

/// <summary>
/// A logical unit's reservations: persistent reservations (SPC-4 5.13) and the SPC-2
/// reservation of RESERVE/RELEASE. Commands from many nexuses run concurrently: the checks
/// on the command path read one immutable <see cref="ReservationState"/> and one holder
/// field without locking; the commands that change reservations take turns through an
/// async gate, so each sees the state the previous one left, and publish the new state only
/// once it is durable (APTPL).
/// </summary>
internal sealed class ReservationManager
{
    private readonly SemaphoreSlim changes = new(1, 1);
    private readonly AptplStore? store;
    private readonly ILogger log;
    private volatile ReservationState state = ReservationState.Empty;
    private ItNexus? spc2Holder; // read with Volatile.Read, changed with Interlocked

    /// <param name="stateDirectory">Where APTPL state lives; null means the LU cannot persist through power loss (PTPL_C 0).</param>
    /// <param name="log">The LU's logger.</param>
    public ReservationManager(string? stateDirectory, ILogger log)
    {
        this.log = log;
        if (stateDirectory is null)
            return;
        store = new AptplStore(stateDirectory);
        if (store.Load() is { } restored)
        {
            state = restored;
            log.Information("Restored persistent reservations (APTPL): {Registrations} registration(s), {Reservation}, PRgeneration {Generation}",
                restored.Registrations.Length, restored.Reservation is { } r ? r.Type.Describe() + " held by " + r.Holder : "no reservation", restored.Generation);
        }
    }

    public ReservationState State => state;

    /// <summary>The I_T nexus holding an SPC-2 reservation, or null.</summary>
    public ItNexus? Spc2Holder => Volatile.Read(ref spc2Holder);

    /// <summary>Whether APTPL can be honoured (PTPL_C): the LU has a state directory.</summary>
    public bool CanPersist => store is not null;

    /// <summary>
    /// Whether <paramref name="nexus"/> must be refused a command of <paramref name="rule"/> with
    /// RESERVATION CONFLICT. The fast path (no reservation of either kind) is two volatile reads.
    /// </summary>
    public bool Conflicts(ItNexus nexus, ReservationRule rule)
    {
        if (Volatile.Read(ref spc2Holder) is { } holder)
        {
            var conflict = rule.Spc2 switch
            {
                Spc2Access.Allowed or Spc2Access.OwnRules => false,
                Spc2Access.ConflictsForAll => true,
                _ => holder != nexus,
            };
            if (conflict)
                return true;
        }
        var current = state;
        return current.Reservation is not null && ReservationRule.ConflictsWithPersistentReservation(current, nexus, rule.Persistent);
    }

    /// <summary>Runs a PERSISTENT RESERVE OUT: applies it, persists the result if APTPL is or was in force, then tells and aborts whom SPC-4 says.</summary>
    public async ValueTask PersistentReserveOutAsync(ScsiLun lun, ScsiTask task, ProutRequest request)
    {
        await changes.WaitAsync(task.AbortToken);
        try
        {
            if (Volatile.Read(ref spc2Holder) is not null)
                throw new ScsiException(ScsiStatus.ReservationConflict, "an SPC-2 reservation is in effect");
            var before = state;
            var effects = PersistentReserveOut.Apply(before, task.Nexus, request, rtpi => FindTargetPort(lun, task.Nexus, rtpi));
            var after = effects.State;
            if (!ReferenceEquals(after, before))
            {
                Persist(before, after);
                state = after;
            }
            foreach (var notice in effects.Notices)
                lun.UnitAttentions.EstablishWhere(n => n != task.Nexus && notice.Who.Matches(n), notice.Sense);
            if (!effects.Aborted.IsEmpty)
            {
                var aborted = lun.AbortTasks(t => t != task && t.Nexus != task.Nexus && effects.Aborted.Any(p => p.Matches(t.Nexus)));
                log.Information("PREEMPT AND ABORT from {Nexus} aborted {Count} task(s) of the preempted I_T nexuses", task.Nexus.InitiatorPort, aborted);
            }
            if (before.Reservation != after.Reservation || before.Registrations.Length != after.Registrations.Length)
                log.Debug("{Nexus}: PERSISTENT RESERVE OUT {Action}: {Registrations} registration(s), {Reservation}",
                    task.Nexus.InitiatorPort, request.Action, after.Registrations.Length,
                    after.Reservation is { } r ? r.Type.Describe() + " held by " + r.Holder : "no reservation");
        }
        finally
        {
            changes.Release();
        }
    }

    // APTPL (SPC-4 5.13.5): saved while the last valid APTPL bit is one; the file goes when it turns zero.
    private void Persist(ReservationState before, ReservationState after)
    {
        if (store is null || (!before.Aptpl && !after.Aptpl))
            return;
        try
        {
            if (after.Aptpl)
                store.Save(after);
            else
                store.Delete();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Nothing was published: the command fails and the LU keeps the state it had.
            log.Error(e, "Could not persist persistent reservations to {File}", store.FilePath);
            throw new ScsiException(Sense.InternalTargetFailure);
        }
    }

    /// <summary>A target port of this LU's target by relative port identifier: the issuer's, or one some nexus has used.</summary>
    private static TargetPort? FindTargetPort(ScsiLun lun, ItNexus issuer, ushort relativePortId)
    {
        if (issuer.TargetPort.RelativePortId == relativePortId)
            return issuer.TargetPort;
        foreach (var nexus in lun.UnitAttentions.KnownNexuses)
            if (nexus.TargetPort.RelativePortId == relativePortId && nexus.TargetPort.TargetName == issuer.TargetPort.TargetName)
                return nexus.TargetPort;
        return null;
    }

    // ---- SPC-2 RESERVE / RELEASE, with SPC-4 5.13.3's exceptions ----

    /// <summary>RESERVE(6)/(10).</summary>
    public async ValueTask ReserveAsync(ScsiTask task)
    {
        await changes.WaitAsync(task.AbortToken);
        try
        {
            if (PersistentReservationsDecide(task.Nexus))
                return;
            var holder = Volatile.Read(ref spc2Holder);
            if (holder is not null && holder != task.Nexus)
                throw new ScsiException(ScsiStatus.ReservationConflict, "another I_T nexus holds the SPC-2 reservation");
            if (!task.Aborted)
                Volatile.Write(ref spc2Holder, task.Nexus);
        }
        finally
        {
            changes.Release();
        }
    }

    /// <summary>RELEASE(6)/(10): releases the issuer's SPC-2 reservation; from anyone else it is GOOD and does nothing.</summary>
    public async ValueTask ReleaseAsync(ScsiTask task)
    {
        await changes.WaitAsync(task.AbortToken);
        try
        {
            if (PersistentReservationsDecide(task.Nexus))
                return;
            Interlocked.CompareExchange(ref spc2Holder, null, task.Nexus);
        }
        finally
        {
            changes.Release();
        }
    }

    /// <summary>
    /// SPC-4 5.13.3: a RESERVE or RELEASE from a persistent reservation holder, or from a
    /// registrant under a registrants only or all registrants type, completes with GOOD and
    /// changes nothing (true); from anyone else while registrations exist it conflicts (SPC-2
    /// 5.5.1); with no registrations SPC-2 applies (false).
    /// </summary>
    private bool PersistentReservationsDecide(ItNexus nexus)
    {
        var current = state;
        if (current.Registrations.IsEmpty)
            return false;
        if (current.Reservation is { } r && (current.IsHolder(nexus) || (r.Type.AdmitsRegistrants() && current.Find(nexus) is not null)))
            return true;
        throw new ScsiException(ScsiStatus.ReservationConflict, "persistent reservation registrations exist");
    }

    /// <summary>Drops the SPC-2 reservation (logical unit reset, power on); persistent reservations stay.</summary>
    public void ResetSpc2() => Volatile.Write(ref spc2Holder, null);

    /// <summary>I_T nexus loss releases that nexus's SPC-2 reservation; registrations stay.</summary>
    public void NexusLost(ItNexus nexus) => Interlocked.CompareExchange(ref spc2Holder, null, nexus);
}
