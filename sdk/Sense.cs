namespace HandlerRuntime.Sdk;

/// <summary>
/// Named sense data for the situations handlers report. Those only the runtime raises (unit
/// attentions, reservation and EXTENDED COPY errors) are internal: a handler reports their causes
/// through <see cref="IDeviceEvents"/> instead.
/// </summary>
public static class Sense
{
    /// <summary>ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (20h/00h).</summary>
    public static SenseData InvalidOpcode => new(SenseKey.IllegalRequest, 0x20, 0x00);
    /// <summary>ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h).</summary>
    public static SenseData LbaOutOfRange => new(SenseKey.IllegalRequest, 0x21, 0x00);
    /// <summary>ILLEGAL REQUEST, INVALID FIELD IN CDB (24h/00h).</summary>
    public static SenseData InvalidFieldInCdb => new(SenseKey.IllegalRequest, 0x24, 0x00);
    /// <summary>ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (25h/00h).</summary>
    internal static SenseData LunNotSupported => new(SenseKey.IllegalRequest, 0x25, 0x00);
    /// <summary>ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (26h/00h).</summary>
    public static SenseData InvalidFieldInParameterList => new(SenseKey.IllegalRequest, 0x26, 0x00);
    /// <summary>ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR (1Ah/00h).</summary>
    public static SenseData ParameterListLengthError => new(SenseKey.IllegalRequest, 0x1A, 0x00);
    /// <summary>ILLEGAL REQUEST, INVALID RELEASE OF PERSISTENT RESERVATION (26h/04h): the holder's RELEASE named another type or scope.</summary>
    internal static SenseData InvalidReleaseOfPersistentReservation => new(SenseKey.IllegalRequest, 0x26, 0x04);
    /// <summary>ILLEGAL REQUEST, INSUFFICIENT REGISTRATION RESOURCES (55h/04h): the logical unit holds as many persistent reservation registrations as it can.</summary>
    internal static SenseData InsufficientRegistrationResources => new(SenseKey.IllegalRequest, 0x55, 0x04);
    /// <summary>ILLEGAL REQUEST, SAVING PARAMETERS NOT SUPPORTED (39h/00h).</summary>
    internal static SenseData SavingParametersNotSupported => new(SenseKey.IllegalRequest, 0x39, 0x00);
    /// <summary>ILLEGAL REQUEST, INVALID FIELD IN INFORMATION UNIT (0Eh/03h): the transport carried less data than the CDB asks for.</summary>
    internal static SenseData InvalidFieldInInformationUnit => new(SenseKey.IllegalRequest, 0x0E, 0x03);
    /// <summary>DATA PROTECT, WRITE PROTECTED (27h/00h).</summary>
    public static SenseData WriteProtected => new(SenseKey.DataProtect, 0x27, 0x00);
    /// <summary>DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT (27h/07h): a thin store ran out of space (SBC-3 4.7.3.7).</summary>
    public static SenseData SpaceAllocationFailed => new(SenseKey.DataProtect, 0x27, 0x07);
    /// <summary>ABORTED COMMAND, LOGICAL UNIT COMMUNICATION TIME-OUT (08h/01h): the store did not answer in time; the initiator may retry.</summary>
    public static SenseData CommunicationTimeout => new(SenseKey.AbortedCommand, 0x08, 0x01);
    /// <summary>MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION (1Dh/00h) at byte <paramref name="offset"/> of the compared data.</summary>
    public static SenseData Miscompare(ulong offset) => new SenseData(SenseKey.Miscompare, 0x1D, 0x00).WithInformation(offset);
    /// <summary>MEDIUM ERROR, UNRECOVERED READ ERROR (11h/00h).</summary>
    public static SenseData UnrecoveredReadError => new(SenseKey.MediumError, 0x11, 0x00);
    /// <summary>MEDIUM ERROR, WRITE ERROR (0Ch/00h).</summary>
    public static SenseData WriteError => new(SenseKey.MediumError, 0x0C, 0x00);
    /// <summary>HARDWARE ERROR, INTERNAL TARGET FAILURE (44h/00h).</summary>
    public static SenseData InternalTargetFailure => new(SenseKey.HardwareError, 0x44, 0x00);
    /// <summary>NOT READY, ASYMMETRIC ACCESS STATE TRANSITION (04h/0Ah): retry later.</summary>
    public static SenseData NotReadyTransitioning => new(SenseKey.NotReady, 0x04, 0x0A);
    /// <summary>NOT READY, FORMAT IN PROGRESS (04h/04h).</summary>
    public static SenseData NotReadyFormatInProgress => new(SenseKey.NotReady, 0x04, 0x04);
    /// <summary>NOT READY, CAUSE NOT REPORTABLE (04h/00h).</summary>
    public static SenseData NotReady => new(SenseKey.NotReady, 0x04, 0x00);
    /// <summary>NOT READY, INITIALIZING COMMAND REQUIRED (04h/02h): the unit is stopped.</summary>
    public static SenseData NotReadyInitializingCommandRequired => new(SenseKey.NotReady, 0x04, 0x02);
    /// <summary>UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29h/00h).</summary>
    internal static SenseData PowerOnReset => new(SenseKey.UnitAttention, 0x29, 0x00);
    /// <summary>UNIT ATTENTION, MODE PARAMETERS CHANGED (2Ah/01h).</summary>
    internal static SenseData ModeParametersChanged => new(SenseKey.UnitAttention, 0x2A, 0x01);
    /// <summary>UNIT ATTENTION, RESERVATIONS PREEMPTED (2Ah/03h).</summary>
    internal static SenseData ReservationsPreempted => new(SenseKey.UnitAttention, 0x2A, 0x03);
    /// <summary>UNIT ATTENTION, RESERVATIONS RELEASED (2Ah/04h).</summary>
    internal static SenseData ReservationsReleased => new(SenseKey.UnitAttention, 0x2A, 0x04);
    /// <summary>UNIT ATTENTION, REGISTRATIONS PREEMPTED (2Ah/05h).</summary>
    internal static SenseData RegistrationsPreempted => new(SenseKey.UnitAttention, 0x2A, 0x05);
    /// <summary>UNIT ATTENTION, CAPACITY DATA HAS CHANGED (2Ah/09h).</summary>
    internal static SenseData CapacityDataChanged => new(SenseKey.UnitAttention, 0x2A, 0x09);
    /// <summary>UNIT ATTENTION, COMMANDS CLEARED BY ANOTHER INITIATOR (2Fh/00h).</summary>
    internal static SenseData CommandsClearedByAnotherInitiator => new(SenseKey.UnitAttention, 0x2F, 0x00);
    /// <summary>UNIT ATTENTION, REPORTED LUNS DATA HAS CHANGED (3Fh/0Eh).</summary>
    internal static SenseData ReportedLunsDataChanged => new(SenseKey.UnitAttention, 0x3F, 0x0E);
    /// <summary>UNIT ATTENTION, ASYMMETRIC ACCESS STATE CHANGED (2Ah/06h).</summary>
    internal static SenseData AsymmetricAccessStateChanged => new(SenseKey.UnitAttention, 0x2A, 0x06);
    /// <summary>ABORTED COMMAND, no additional sense (00h/00h): retry.</summary>
    public static SenseData AbortedCommand => new(SenseKey.AbortedCommand, 0x00, 0x00);

    // ---- zoned block devices (ZBC), thrown by IZonedBlockDevice implementations ----

    /// <summary>ILLEGAL REQUEST, UNALIGNED WRITE COMMAND (21h/04h): a write to a sequential-write-required zone does not start at its write pointer.</summary>
    public static SenseData UnalignedWrite => new(SenseKey.IllegalRequest, 0x21, 0x04);
    /// <summary>ILLEGAL REQUEST, WRITE BOUNDARY VIOLATION (21h/05h): a write crosses the end of a sequential-write-required zone, or runs from a conventional zone into a write pointer zone.</summary>
    public static SenseData WriteBoundaryViolation => new(SenseKey.IllegalRequest, 0x21, 0x05);
    /// <summary>ILLEGAL REQUEST, ATTEMPT TO READ INVALID DATA (21h/06h): a read past a write pointer when reads are restricted (URSWRZ 0).</summary>
    public static SenseData AttemptToReadInvalidData => new(SenseKey.IllegalRequest, 0x21, 0x06);
    /// <summary>ILLEGAL REQUEST, READ BOUNDARY VIOLATION (21h/07h): a read crosses a zone boundary when reads are restricted (URSWRZ 0).</summary>
    public static SenseData ReadBoundaryViolation => new(SenseKey.IllegalRequest, 0x21, 0x07);
    /// <summary>DATA PROTECT, INSUFFICIENT ZONE RESOURCES (55h/0Eh): opening a zone would exceed the open-zone limit.</summary>
    public static SenseData InsufficientZoneResources => new(SenseKey.DataProtect, 0x55, 0x0E);
    /// <summary>ILLEGAL REQUEST, INVALID FIELD IN CDB (24h/00h), as ZBC answers a write to a FULL sequential-write-required zone.</summary>
    public static SenseData WriteToFullZone => new(SenseKey.IllegalRequest, 0x24, 0x00);
    /// <summary>DATA PROTECT, ZONE IS READ ONLY (27h/08h).</summary>
    public static SenseData ZoneIsReadOnly => new(SenseKey.DataProtect, 0x27, 0x08);
    /// <summary>DATA PROTECT, ZONE IS OFFLINE (2Ch/0Eh).</summary>
    public static SenseData ZoneIsOffline => new(SenseKey.DataProtect, 0x2C, 0x0E);

    // ---- EXTENDED COPY and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18) ----

    /// <summary>COPY ABORTED, NO ADDITIONAL SENSE INFORMATION (00h/00h): a segment could not be completed; the segment number and pointer say which and where.</summary>
    internal static SenseData CopyAborted => new(SenseKey.CopyAborted, 0x00, 0x00);
    /// <summary>COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE (0Dh/02h): a copy source or destination named by the parameter list is not available to this copy manager.</summary>
    internal static SenseData CopyTargetDeviceNotReachable => new(SenseKey.CopyAborted, 0x0D, 0x02);
    /// <summary>COPY ABORTED, INCORRECT COPY TARGET DEVICE TYPE (0Dh/03h): a copy source or destination is not the kind of device the segment needs.</summary>
    internal static SenseData IncorrectCopyTargetDeviceType => new(SenseKey.CopyAborted, 0x0D, 0x03);
    /// <summary>COPY ABORTED, UNEXPECTED INEXACT SEGMENT (26h/0Ah): a segment's data is not a whole number of blocks of its source or destination and no pad was allowed.</summary>
    internal static SenseData UnexpectedInexactSegment => new(SenseKey.CopyAborted, 0x26, 0x0A);
    /// <summary>ILLEGAL REQUEST, TOO MANY TARGET DESCRIPTORS (26h/06h): more CSCD descriptors than the copy manager's maximum.</summary>
    internal static SenseData TooManyTargetDescriptors => new(SenseKey.IllegalRequest, 0x26, 0x06);
    /// <summary>ILLEGAL REQUEST, UNSUPPORTED TARGET DESCRIPTOR TYPE CODE (26h/07h).</summary>
    internal static SenseData UnsupportedTargetDescriptorType => new(SenseKey.IllegalRequest, 0x26, 0x07);
    /// <summary>ILLEGAL REQUEST, TOO MANY SEGMENT DESCRIPTORS (26h/08h): more segment descriptors than the copy manager's maximum.</summary>
    internal static SenseData TooManySegmentDescriptors => new(SenseKey.IllegalRequest, 0x26, 0x08);
    /// <summary>ILLEGAL REQUEST, UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE (26h/09h).</summary>
    internal static SenseData UnsupportedSegmentDescriptorType => new(SenseKey.IllegalRequest, 0x26, 0x09);
    /// <summary>ILLEGAL REQUEST, INLINE DATA LENGTH EXCEEDED (26h/0Bh): more inline data than the copy manager accepts.</summary>
    internal static SenseData InlineDataLengthExceeded => new(SenseKey.IllegalRequest, 0x26, 0x0B);
    /// <summary>ILLEGAL REQUEST, OPERATION IN PROGRESS (00h/16h): an EXTENDED COPY with the same list identifier is still running for this I_T nexus.</summary>
    public static SenseData OperationInProgress => new(SenseKey.IllegalRequest, 0x00, 0x16);
    /// <summary>ILLEGAL REQUEST, INSUFFICIENT RESOURCES (55h/03h): the copy manager runs as many copies as it can.</summary>
    public static SenseData InsufficientResources => new(SenseKey.IllegalRequest, 0x55, 0x03);
}
