namespace HandlerRuntime.Scsi.Reservations;

/// <summary>The persistent reservation types; each value is its TYPE field code (SPC-4 6.16.2, persistent reservation type codes).</summary>
internal enum PersistentReservationType : byte
{
    WriteExclusive = 0x1,
    ExclusiveAccess = 0x3,
    WriteExclusiveRegistrantsOnly = 0x5,
    ExclusiveAccessRegistrantsOnly = 0x6,
    WriteExclusiveAllRegistrants = 0x7,
    ExclusiveAccessAllRegistrants = 0x8,
}

internal static class PersistentReservationTypes
{
    /// <summary>Every type this device server implements, in TYPE code order.</summary>
    public static readonly PersistentReservationType[] All =
    [
        PersistentReservationType.WriteExclusive,
        PersistentReservationType.ExclusiveAccess,
        PersistentReservationType.WriteExclusiveRegistrantsOnly,
        PersistentReservationType.ExclusiveAccessRegistrantsOnly,
        PersistentReservationType.WriteExclusiveAllRegistrants,
        PersistentReservationType.ExclusiveAccessAllRegistrants,
    ];

    /// <summary>Whether a TYPE field value names a type (0h, 2h and 4h are obsolete, 9h-Fh reserved).</summary>
    public static bool IsDefined(int code) => code is 0x1 or 0x3 or 0x5 or 0x6 or 0x7 or 0x8;

    /// <summary>All registrants types: every registered I_T nexus is a reservation holder (SPC-4 5.13.10).</summary>
    public static bool IsAllRegistrants(this PersistentReservationType type)
        => type is PersistentReservationType.WriteExclusiveAllRegistrants or PersistentReservationType.ExclusiveAccessAllRegistrants;

    public static bool IsRegistrantsOnly(this PersistentReservationType type)
        => type is PersistentReservationType.WriteExclusiveRegistrantsOnly or PersistentReservationType.ExclusiveAccessRegistrantsOnly;

    /// <summary>Registrants only and all registrants types: a registered I_T nexus has the holder's access.</summary>
    public static bool AdmitsRegistrants(this PersistentReservationType type) => type.IsRegistrantsOnly() || type.IsAllRegistrants();

    /// <summary>The Write Exclusive family, under which reads stay shared with everyone.</summary>
    public static bool SharesReads(this PersistentReservationType type)
        => type is PersistentReservationType.WriteExclusive or PersistentReservationType.WriteExclusiveRegistrantsOnly or PersistentReservationType.WriteExclusiveAllRegistrants;

    /// <summary>The bit of this type in the PERSISTENT RESERVATION TYPE MASK of REPORT CAPABILITIES (SPC-4 6.15.4), as a big-endian 16-bit value.</summary>
    public static ushort MaskBit(this PersistentReservationType type) => type switch
    {
        PersistentReservationType.WriteExclusive => 0x0200,
        PersistentReservationType.ExclusiveAccess => 0x0800,
        PersistentReservationType.WriteExclusiveRegistrantsOnly => 0x2000,
        PersistentReservationType.ExclusiveAccessRegistrantsOnly => 0x4000,
        PersistentReservationType.WriteExclusiveAllRegistrants => 0x8000,
        PersistentReservationType.ExclusiveAccessAllRegistrants => 0x0001,
        _ => 0,
    };

    /// <summary>The name SPC-4 gives the type, for logs and status output.</summary>
    public static string Describe(this PersistentReservationType type) => type switch
    {
        PersistentReservationType.WriteExclusive => "Write Exclusive",
        PersistentReservationType.ExclusiveAccess => "Exclusive Access",
        PersistentReservationType.WriteExclusiveRegistrantsOnly => "Write Exclusive - Registrants Only",
        PersistentReservationType.ExclusiveAccessRegistrantsOnly => "Exclusive Access - Registrants Only",
        PersistentReservationType.WriteExclusiveAllRegistrants => "Write Exclusive - All Registrants",
        PersistentReservationType.ExclusiveAccessAllRegistrants => "Exclusive Access - All Registrants",
        _ => $"type {(int)type:X}h",
    };
}
