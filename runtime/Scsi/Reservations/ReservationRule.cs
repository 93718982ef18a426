namespace HandlerRuntime.Scsi.Reservations;

/// <summary>
/// How a command fares under a persistent reservation that the I_T nexus sending it does not
/// hold: one row of SPC-4 5.13.1 "SPC commands that are allowed in the presence of various
/// reservations" or of its SBC-3 4.17 counterpart, reduced to the classes those tables use.
/// </summary>
internal enum PersistentAccess : byte
{
    /// <summary>Allowed under every type, from every I_T nexus (INQUIRY, READ CAPACITY, PERSISTENT RESERVE IN ...).</summary>
    Allowed,

    /// <summary>
    /// Reads: allowed through the Write Exclusive types, conflicts through the Exclusive Access
    /// types unless the type admits registrants and the nexus is registered. MODE SENSE and the
    /// other commands of REPORT CAPABILITIES' ALLOW COMMANDS list belong here: 011b is reported.
    /// </summary>
    Read,

    /// <summary>Writes and state changes: only the holder, and registrants of a registrants only or all registrants type.</summary>
    Write,

    /// <summary>The command applies its own rules (PERSISTENT RESERVE OUT, SPC-4 5.13.1; RESERVE and RELEASE, SPC-4 5.13.3).</summary>
    OwnRules,
}

/// <summary>How a command fares while another I_T nexus holds an SPC-2 reservation (RESERVE(6)/RESERVE(10)).</summary>
internal enum Spc2Access : byte
{
    /// <summary>Conflicts unless the nexus holds the reservation (the SPC-2 default).</summary>
    HolderOnly,

    /// <summary>Allowed from every I_T nexus (INQUIRY, REQUEST SENSE, REPORT LUNS).</summary>
    Allowed,

    /// <summary>
    /// Conflicts from every I_T nexus, the holder included: SPC-2 5.5.1 rejects PERSISTENT
    /// RESERVE IN and OUT while a RESERVE is in effect.
    /// </summary>
    ConflictsForAll,

    /// <summary>The command applies its own rules (RESERVE and RELEASE).</summary>
    OwnRules,
}

/// <summary>
/// A command's behaviour under reservations, declared once per command in <see cref="CommandTable"/>;
/// the dispatcher applies it before the command's fields are checked, so a new command gets the
/// right conflicts by declaring its class.
/// </summary>
internal readonly record struct ReservationRule(PersistentAccess Persistent, Spc2Access Spc2)
{
    /// <summary>INQUIRY, REQUEST SENSE, REPORT LUNS: allowed under every reservation.</summary>
    public static readonly ReservationRule Unrestricted = new(PersistentAccess.Allowed, Spc2Access.Allowed);

    /// <summary>TEST UNIT READY, READ CAPACITY: allowed under persistent reservations (ALLOW COMMANDS 011b), not under another nexus's RESERVE.</summary>
    public static readonly ReservationRule PersistentlyAllowed = new(PersistentAccess.Allowed, Spc2Access.HolderOnly);

    /// <summary>READ, VERIFY, MODE SENSE: shared through the Write Exclusive types.</summary>
    public static readonly ReservationRule Read = new(PersistentAccess.Read, Spc2Access.HolderOnly);

    /// <summary>WRITE, WRITE SAME, UNMAP, SYNCHRONIZE CACHE, MODE SELECT: holder and admitted registrants only.</summary>
    public static readonly ReservationRule Write = new(PersistentAccess.Write, Spc2Access.HolderOnly);

    /// <summary>PERSISTENT RESERVE IN: allowed under every persistent reservation (SPC-4 5.13.1), never under RESERVE (SPC-2 5.5.1).</summary>
    public static readonly ReservationRule PersistentReserveIn = new(PersistentAccess.Allowed, Spc2Access.ConflictsForAll);

    /// <summary>PERSISTENT RESERVE OUT: each service action decides (SPC-4 5.13.1, second table), never under RESERVE (SPC-2 5.5.1).</summary>
    public static readonly ReservationRule PersistentReserveOut = new(PersistentAccess.OwnRules, Spc2Access.ConflictsForAll);

    /// <summary>RESERVE and RELEASE (6)/(10): SPC-2 rules with SPC-4 5.13.3's exceptions, applied by the commands.</summary>
    public static readonly ReservationRule Spc2ReserveRelease = new(PersistentAccess.OwnRules, Spc2Access.OwnRules);

    /// <summary>A command the table does not know (offered to a handler's hook): treated as a write, the safe assumption.</summary>
    public static readonly ReservationRule UnknownCommand = Write;

    /// <summary>
    /// SPC-4 5.13.1's table as a decision: whether <paramref name="nexus"/> may run a command of
    /// class <paramref name="access"/> under <paramref name="state"/>'s persistent reservation.
    /// </summary>
    public static bool ConflictsWithPersistentReservation(ReservationState state, ItNexus nexus, PersistentAccess access)
    {
        if (state.Reservation is not { } reservation || access is PersistentAccess.Allowed or PersistentAccess.OwnRules)
            return false;
        var standing = state.StandingOf(nexus);
        if (standing.Holder)
            return false;
        // "From registered I_T nexus (RR all types)": everything is allowed.
        if (reservation.Type.AdmitsRegistrants() && standing.Registered)
            return false;
        // Everyone else: reads pass the Write Exclusive types only; writes never pass.
        return !(access == PersistentAccess.Read && reservation.Type.SharesReads());
    }
}
