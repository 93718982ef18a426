using System.Collections.Immutable;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Reservations;

/// <summary>PERSISTENT RESERVE OUT service action codes (SPC-4 6.16.2).</summary>
internal enum ProutServiceAction : byte
{
    Register = 0x00,
    Reserve = 0x01,
    Release = 0x02,
    Clear = 0x03,
    Preempt = 0x04,
    PreemptAndAbort = 0x05,
    RegisterAndIgnoreExistingKey = 0x06,
    RegisterAndMove = 0x07,
}

/// <summary>A decoded PERSISTENT RESERVE OUT: the CDB and its parameter list, checked for form but not yet against the state.</summary>
internal sealed record ProutRequest(ProutServiceAction Action, ulong ReservationKey, ulong ServiceActionKey)
{
    /// <summary>TYPE, for RESERVE, RELEASE, PREEMPT and PREEMPT AND ABORT (scope is always LU_SCOPE).</summary>
    public PersistentReservationType Type { get; init; }

    /// <summary>APTPL, for REGISTER, REGISTER AND IGNORE EXISTING KEY and REGISTER AND MOVE.</summary>
    public bool Aptpl { get; init; }

    /// <summary>ALL_TG_PT, for REGISTER and REGISTER AND IGNORE EXISTING KEY.</summary>
    public bool AllTargetPorts { get; init; }

    /// <summary>The initiators SPEC_I_PT names, for REGISTER (empty when SPEC_I_PT is zero).</summary>
    public ImmutableArray<TransportId> SpecifiedInitiators { get; init; } = [];

    public bool SpecifyInitiatorPorts { get; init; }

    /// <summary>REGISTER AND MOVE: UNREG, the destination's relative target port and initiator.</summary>
    public bool Unregister { get; init; }

    public ushort RelativeTargetPortId { get; init; }

    public TransportId Destination { get; init; }
}

/// <summary>A unit attention to establish for every I_T nexus <see cref="Who"/> names, except the one the command came on.</summary>
internal readonly record struct ReservationNotice(NexusPattern Who, SenseData Sense);

/// <summary>What a PERSISTENT RESERVE OUT did: the new state, whom to tell, whose tasks to abort.</summary>
internal sealed record ProutEffects(ReservationState State, ImmutableArray<ReservationNotice> Notices, ImmutableArray<NexusPattern> Aborted)
{
    public static ProutEffects Silent(ReservationState state) => new(state, [], []);
}

/// <summary>
/// The PERSISTENT RESERVE OUT state machine (SPC-4 5.13.7-5.13.11, 6.16): a pure function
/// from the state and a request to the next state and its side effects. Refusals are thrown
/// as <see cref="ScsiException"/> (RESERVATION CONFLICT or CHECK CONDITION), and then
/// nothing changed.
/// </summary>
internal static class PersistentReserveOut
{
    /// <summary>Registrations one logical unit keeps; past this, REGISTER fails with INSUFFICIENT REGISTRATION RESOURCES.</summary>
    public const int MaxRegistrations = 1024;

    /// <summary>Applies <paramref name="request"/> received from <paramref name="issuer"/>.</summary>
    /// <param name="state">The state before the command.</param>
    /// <param name="issuer">The I_T nexus the command came on.</param>
    /// <param name="request">The decoded command.</param>
    /// <param name="findTargetPort">Finds a target port of this SCSI target device by relative port identifier (REGISTER AND MOVE).</param>
    public static ProutEffects Apply(ReservationState state, ItNexus issuer, ProutRequest request, Func<ushort, TargetPort?> findTargetPort)
        => request.Action switch
        {
            ProutServiceAction.Register => Register(state, issuer, request, ignoreExistingKey: false),
            ProutServiceAction.RegisterAndIgnoreExistingKey => Register(state, issuer, request, ignoreExistingKey: true),
            ProutServiceAction.Reserve => Reserve(state, issuer, request),
            ProutServiceAction.Release => Release(state, issuer, request),
            ProutServiceAction.Clear => Clear(state, issuer, request),
            ProutServiceAction.Preempt => Preempt(state, issuer, request),
            ProutServiceAction.PreemptAndAbort => Preempt(state, issuer, request),
            ProutServiceAction.RegisterAndMove => RegisterAndMove(state, issuer, request, findTargetPort),
            _ => throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(1, 4)),
        };

    private static ScsiException Conflict(string why) => new(ScsiStatus.ReservationConflict, why);

    private static ScsiException InvalidParameter(int byteIndex, int bit = -1)
        => new(Sense.InvalidFieldInParameterList.WithFieldPointer(byteIndex, bit, inCdb: false));

    /// <summary>The registration of the issuer whose RESERVATION KEY matches; every service action but REGISTER AND IGNORE EXISTING KEY requires one (SPC-4 6.16.3).</summary>
    private static Registration RegisteredWithKey(ReservationState state, ItNexus issuer, ulong reservationKey)
    {
        var registration = state.Find(issuer) ?? throw Conflict("the I_T nexus is not registered");
        if (registration.Key != reservationKey)
            throw Conflict("RESERVATION KEY does not match the registered key");
        return registration;
    }

    // ---- SPC-4 5.13.7, Registering; 5.13.11.3, Unregistering ----

    private static ProutEffects Register(ReservationState state, ItNexus issuer, ProutRequest request, bool ignoreExistingKey)
    {
        var next = state with { Generation = state.Generation + 1 };
        var existing = state.Find(issuer);
        if (existing is null)
        {
            if (!ignoreExistingKey && request.ReservationKey != 0)
                throw Conflict("an unregistered I_T nexus sent a non-zero RESERVATION KEY");
            if (request.ServiceActionKey == 0)
                return ProutEffects.Silent(next); // nothing to register, yet the REGISTER counts
            return new ProutEffects(next with { Registrations = NewRegistrations(state, issuer, request, ignoreExistingKey), Aptpl = request.Aptpl }, [], []);
        }

        if (!ignoreExistingKey && request.ReservationKey != existing.Key)
            throw Conflict("RESERVATION KEY does not match the registered key");
        if (request.SpecifyInitiatorPorts)
            throw InvalidParameter(20, 3); // SPEC_I_PT from a registered I_T nexus
        next = next with { Aptpl = request.Aptpl };
        if (request.ServiceActionKey != 0)
            return ProutEffects.Silent(next with { Registrations = state.Registrations.Replace(existing, existing with { Key = request.ServiceActionKey }) });
        return Unregister(next, existing);
    }

    /// <summary>The registrations after an unregistered I_T nexus registers, with ALL_TG_PT and SPEC_I_PT applied.</summary>
    private static ImmutableArray<Registration> NewRegistrations(ReservationState state, ItNexus issuer, ProutRequest request, bool ignoreExistingKey)
    {
        var own = NexusPattern.Of(issuer);
        if (request.AllTargetPorts)
            own = own.ThroughAllTargetPorts();
        var registrations = state.Registrations.ToBuilder();

        // ALL_TG_PT acts as if the REGISTER had arrived through every target port: where this
        // initiator port is already registered through another one, REGISTER AND IGNORE
        // EXISTING KEY replaces that key and REGISTER meets a key mismatch.
        foreach (var r in state.Registrations.Where(r => r.Nexus.Overlaps(own)))
        {
            if (!ignoreExistingKey || !own.Covers(r.Nexus))
                throw Conflict($"ALL_TG_PT would also register {r.Nexus}, which is already registered");
            registrations.Remove(r);
        }

        registrations.Add(new Registration(own, request.ServiceActionKey));
        // SPEC_I_PT: the named initiators are registered through the same target port(s), all or
        // none; one already registered, or named twice, is an invalid parameter list.
        var added = new List<NexusPattern> { own };
        foreach (var id in request.SpecifiedInitiators)
        {
            var pattern = id.Through(own.TargetPort, own.RelativeTargetPortId, own.ProtocolId);
            if (registrations.Any(r => r.Nexus.Overlaps(pattern)) || added.Any(a => a.Overlaps(pattern)))
                throw InvalidParameter(28);
            registrations.Add(new Registration(pattern, request.ServiceActionKey));
            added.Add(pattern);
        }
        if (registrations.Count > MaxRegistrations)
            throw new ScsiException(Sense.InsufficientRegistrationResources);
        return registrations.ToImmutable();
    }

    /// <summary>
    /// Removes a registration. A holder losing its registration loses the reservation; for a
    /// registrants only type the other registrants are told RESERVATIONS RELEASED (SPC-4
    /// 5.13.11.3). An all registrants reservation lasts while anyone is registered.
    /// </summary>
    private static ProutEffects Unregister(ReservationState state, Registration registration)
    {
        var registrations = state.Registrations.Remove(registration);
        var reservation = state.Reservation;
        var notices = ImmutableArray<ReservationNotice>.Empty;
        if (reservation is not null && !StillHeld(reservation, registrations))
        {
            if (reservation.Type.IsRegistrantsOnly())
                notices = Tell(registrations, Sense.ReservationsReleased);
            reservation = null;
        }
        return new ProutEffects(state with { Registrations = registrations, Reservation = reservation }, notices, []);
    }

    /// <summary>Whether a reservation still has a holder among the registrations (for the all-registrants types, any registrant).</summary>
    internal static bool StillHeld(PersistentReservation reservation, ImmutableArray<Registration> registrations)
        => reservation.Type.IsAllRegistrants() ? registrations.Length > 0 : registrations.Any(r => r.Nexus.Covers(reservation.Holder));

    private static ImmutableArray<ReservationNotice> Tell(IEnumerable<Registration> registrations, SenseData sense)
        => [.. registrations.Select(r => new ReservationNotice(r.Nexus, sense))];

    // ---- SPC-4 5.13.9, Reserving ----

    private static ProutEffects Reserve(ReservationState state, ItNexus issuer, ProutRequest request)
    {
        RegisteredWithKey(state, issuer, request.ReservationKey);
        if (state.Reservation is { } held)
        {
            // Only a holder may repeat its RESERVE, and only with the same type; it changes nothing.
            if (!state.IsHolder(issuer) || held.Type != request.Type)
                throw Conflict("another persistent reservation is in effect");
            return ProutEffects.Silent(state);
        }
        return ProutEffects.Silent(state with { Reservation = new PersistentReservation(NexusPattern.Of(issuer), request.Type) });
    }

    // ---- SPC-4 5.13.11.2, Releasing ----

    private static ProutEffects Release(ReservationState state, ItNexus issuer, ProutRequest request)
    {
        RegisteredWithKey(state, issuer, request.ReservationKey);
        // No reservation, or a registrant that does not hold it: GOOD, nothing changes.
        if (state.Reservation is not { } held || !state.IsHolder(issuer))
            return ProutEffects.Silent(state);
        if (held.Type != request.Type)
            throw new ScsiException(Sense.InvalidReleaseOfPersistentReservation);
        var notices = held.Type.AdmitsRegistrants() ? Tell(state.Registrations, Sense.ReservationsReleased) : [];
        return new ProutEffects(state with { Reservation = null }, notices, []);
    }

    // ---- SPC-4 5.13.11.6, Clearing ----

    private static ProutEffects Clear(ReservationState state, ItNexus issuer, ProutRequest request)
    {
        RegisteredWithKey(state, issuer, request.ReservationKey);
        // APTPL is not a parameter of CLEAR: the last valid APTPL bit stays in force (SPC-4 5.13.5).
        var cleared = state with { Generation = state.Generation + 1, Registrations = [], Reservation = null };
        return new ProutEffects(cleared, Tell(state.Registrations, Sense.ReservationsPreempted), []);
    }

    // ---- SPC-4 5.13.11.4, Preempting; 5.13.11.5, Preempting and aborting ----

    private static ProutEffects Preempt(ReservationState state, ItNexus issuer, ProutRequest request)
    {
        var own = RegisteredWithKey(state, issuer, request.ReservationKey);
        var key = request.ServiceActionKey;
        var held = state.Reservation;
        var next = state with { Generation = state.Generation + 1 };
        var abort = request.Action == ProutServiceAction.PreemptAndAbort;

        List<Registration> removed;
        PersistentReservation? reservation;
        var notices = ImmutableArray.CreateBuilder<ReservationNotice>();
        if (held is not null && held.Type.IsAllRegistrants() && key == 0)
        {
            // An all registrants reservation preempted with key zero: every other registration
            // goes and the issuer alone holds the new reservation.
            removed = [.. state.Registrations.Where(r => r != own)];
            reservation = new PersistentReservation(NexusPattern.Of(issuer), request.Type);
        }
        else if (held is not null && !held.Type.IsAllRegistrants() && key == state.ReservationKey)
        {
            // The key names the holder (5.13.11.4.3): release, remove every registration with
            // that key except the issuer's, and reserve for the issuer with the new type. The
            // holder may preempt itself to change the type.
            removed = [.. state.Registrations.Where(r => r != own && r.Key == key)];
            reservation = new PersistentReservation(NexusPattern.Of(issuer), request.Type);
        }
        else
        {
            // Removing registrations (5.13.11.4.4): the reservation, if any, stays; TYPE is ignored.
            if (key == 0)
                throw InvalidParameter(8);
            if (!state.Registrations.Any(r => r.Key == key))
                throw Conflict("SERVICE ACTION RESERVATION KEY matches no registration");
            removed = [.. state.Registrations.Where(r => r != own && r.Key == key)];
            reservation = held;
        }

        var registrations = state.Registrations.RemoveRange(removed);
        notices.AddRange(Tell(removed, Sense.RegistrationsPreempted));
        // A changed type releases the old reservation for everyone still registered (5.13.11.4.3 f).
        if (held is not null && reservation is not null && reservation.Type != held.Type)
            notices.AddRange(Tell(registrations, Sense.ReservationsReleased));
        ImmutableArray<NexusPattern> aborted = abort ? [.. removed.Select(r => r.Nexus)] : [];
        return new ProutEffects(next with { Registrations = registrations, Reservation = reservation }, notices.ToImmutable(), aborted);
    }

    // ---- SPC-4 5.13.8, Registering and moving ----

    private static ProutEffects RegisterAndMove(ReservationState state, ItNexus issuer, ProutRequest request, Func<ushort, TargetPort?> findTargetPort)
    {
        var own = RegisteredWithKey(state, issuer, request.ReservationKey);
        if (request.ServiceActionKey == 0)
            throw InvalidParameter(8);
        var port = findTargetPort(request.RelativeTargetPortId);
        if (port is null || port.TargetName != issuer.TargetPort.TargetName)
            throw InvalidParameter(18);
        if (port.ProtocolId != TransportId.IscsiProtocolId)
            throw InvalidParameter(24);
        var destination = request.Destination.Through(port.Name, port.RelativePortId, port.ProtocolId);
        // The destination may not be the issuer's initiator port, nor share its registration.
        var issuerPort = new TransportId(issuer.InitiatorName, issuer.InitiatorPort).Through(null, 0, port.ProtocolId);
        if (destination.Overlaps(issuerPort) || own.Nexus.Overlaps(destination))
            throw InvalidParameter(24);

        if (state.Reservation is not { } held || !state.IsHolder(issuer))
            throw Conflict("REGISTER AND MOVE from an I_T nexus that holds no reservation");
        if (held.Type.IsAllRegistrants())
            throw Conflict("an all registrants reservation cannot be moved");

        // Register the destination, or replace its key: registering an I_T nexus that is
        // already registered is not an error here.
        var registrations = state.Registrations;
        var destinationRegistration = registrations.FirstOrDefault(r => r.Nexus.Covers(destination));
        if (destinationRegistration is not null)
        {
            registrations = registrations.Replace(destinationRegistration, destinationRegistration with { Key = request.ServiceActionKey });
        }
        else
        {
            if (registrations.Any(r => r.Nexus.Overlaps(destination)))
                throw InvalidParameter(24);
            if (registrations.Length >= MaxRegistrations)
                throw new ScsiException(Sense.InsufficientRegistrationResources);
            registrations = registrations.Add(new Registration(destination, request.ServiceActionKey));
        }
        if (request.Unregister)
            registrations = registrations.Remove(own);
        var moved = state with
        {
            Generation = state.Generation + 1,
            Aptpl = request.Aptpl,
            Registrations = registrations,
            Reservation = held with { Holder = destination }, // same type and scope
        };
        return ProutEffects.Silent(moved);
    }
}
