using System.Collections.Concurrent;
using System.Collections.Immutable;

namespace HandlerRuntime.Scsi.Reservations;

/// <summary>A registration: the reservation key registered for some I_T nexuses (SPC-4 5.13.7).</summary>
internal sealed record Registration(NexusPattern Nexus, ulong Key);

/// <summary>
/// The persistent reservation of a logical unit; its scope is always LU_SCOPE. For the all
/// registrants types every registrant holds it and <see cref="Holder"/> only records who
/// established it; for the other types the holder is the one I_T nexus through which it was
/// established (SPC-4 5.13.10).
/// </summary>
internal sealed record PersistentReservation(NexusPattern Holder, PersistentReservationType Type);

/// <summary>
/// Everything persistent reservations keep for a logical unit, as one immutable value: the
/// dispatcher reads it without a lock on every command, and a PERSISTENT RESERVE OUT
/// replaces it as a whole, so a reader never sees half a change.
/// </summary>
/// <param name="Generation">PRGENERATION (SPC-4 6.15.2): a wrapping count of REGISTER, REGISTER AND IGNORE EXISTING KEY, CLEAR, PREEMPT, PREEMPT AND ABORT and REGISTER AND MOVE.</param>
/// <param name="Aptpl">The last valid APTPL bit received: whether this state persists through power loss (SPC-4 5.13.5).</param>
/// <param name="Registrations">In the order they were made. No two overlap: each I_T nexus has at most one.</param>
/// <param name="Reservation">The persistent reservation, if any.</param>
internal sealed record ReservationState(uint Generation, bool Aptpl, ImmutableArray<Registration> Registrations, PersistentReservation? Reservation)
{
    // Where each I_T nexus stands under this state, worked out once per nexus: the dispatcher
    // asks on every command while a reservation exists (fence_scsi keeps one for good), and
    // matching names against every registration each time would cost more than the I/O path allows.
    private readonly ConcurrentDictionary<ItNexus, NexusStanding> standings = new();

    // A state made with `with` is a new state: it must not inherit the cache.
    private ReservationState(ReservationState original)
    {
        Generation = original.Generation;
        Aptpl = original.Aptpl;
        Registrations = original.Registrations;
        Reservation = original.Reservation;
        standings = new();
    }

    public static ReservationState Empty { get; } = new(0, false, [], null);

    /// <summary>Whether <paramref name="nexus"/> is registered and whether it holds the reservation, cached per state.</summary>
    public NexusStanding StandingOf(ItNexus nexus)
    {
        if (standings.TryGetValue(nexus, out var standing))
            return standing;
        standing = new NexusStanding(Find(nexus) is not null, IsHolder(nexus));
        standings.TryAdd(nexus, standing);
        return standing;
    }

    /// <summary>The registration of <paramref name="nexus"/>, or null when it is not registered.</summary>
    public Registration? Find(ItNexus nexus)
    {
        foreach (var r in Registrations)
            if (r.Nexus.Matches(nexus))
                return r;
        return null;
    }

    /// <summary>Whether <paramref name="nexus"/> is a persistent reservation holder (SPC-4 5.13.10).</summary>
    public bool IsHolder(ItNexus nexus) => Reservation is { } r && (r.Type.IsAllRegistrants() ? Find(nexus) is not null : r.Holder.Matches(nexus));

    /// <summary>Whether the I_T nexuses of <paramref name="registration"/> hold the reservation (R_HOLDER of READ FULL STATUS).</summary>
    public bool HoldsReservation(Registration registration)
        => Reservation is { } r && (r.Type.IsAllRegistrants() || registration.Nexus.Covers(r.Holder));

    /// <summary>
    /// The RESERVATION KEY of READ RESERVATION: zero for the all registrants types, else the
    /// holder's registered key (SPC-4 5.13.10).
    /// </summary>
    public ulong ReservationKey
    {
        get
        {
            if (Reservation is not { } r || r.Type.IsAllRegistrants())
                return 0;
            foreach (var reg in Registrations)
                if (reg.Nexus.Covers(r.Holder))
                    return reg.Key;
            return 0;
        }
    }
}

/// <summary>An I_T nexus's place under a <see cref="ReservationState"/>.</summary>
internal readonly record struct NexusStanding(bool Registered, bool Holder);
