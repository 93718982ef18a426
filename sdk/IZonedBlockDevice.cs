namespace HandlerRuntime.Sdk;

/// <summary>
/// Optional, on an <see cref="IBlockDevice"/>: the device is zoned (SCSI ZBC). The runtime
/// then identifies it as zoned (device type 14h for host-managed, the ZONED field of VPD
/// page B1h for host-aware, VPD page B6h, RC BASIS in READ CAPACITY(16)) and answers ZBC IN
/// (REPORT ZONES) and ZBC OUT (CLOSE, FINISH, OPEN, RESET WRITE POINTER) by calling this
/// interface. The runtime decodes and validates the CDBs; the device owns the zone state.
/// <para>
/// Write-pointer rules are the device's: its <see cref="IBlockDevice.ReadAsync"/> and
/// <see cref="IBlockDevice.WriteAsync"/> throw <see cref="ScsiException"/> with
/// <see cref="Sense.UnalignedWrite"/>, <see cref="Sense.WriteBoundaryViolation"/>,
/// <see cref="Sense.WriteToFullZone"/>, <see cref="Sense.AttemptToReadInvalidData"/>,
/// <see cref="Sense.ReadBoundaryViolation"/>, <see cref="Sense.InsufficientZoneResources"/>,
/// <see cref="Sense.ZoneIsReadOnly"/> or <see cref="Sense.ZoneIsOffline"/> as ZBC requires.
/// </para>
/// </summary>
public interface IZonedBlockDevice
{
    /// <summary>The zone model and zone limits; read once after open.</summary>
    ZonedCharacteristics ZonedCharacteristics { get; }

    /// <summary>
    /// Describes, in LBA order, the zones that match <paramref name="options"/>, starting with
    /// the zone that contains <paramref name="startLba"/> (always below the block count: the
    /// runtime checks). Fills at most <paramref name="destination"/>.Length descriptors.
    /// </summary>
    /// <param name="startLba">An LBA inside the first zone to consider.</param>
    /// <param name="options">Which zones to describe.</param>
    /// <param name="partial">
    /// True when the initiator asked only for the zones that fit (PARTIAL): the device may stop
    /// looking once <paramref name="destination"/> is full.
    /// </param>
    /// <param name="destination">Where to write the descriptors; may be empty.</param>
    /// <param name="cancellationToken">Cancelled when the command is aborted.</param>
    /// <returns>
    /// How many descriptors were written, and how many zones match from the start zone to the
    /// last zone (equal to the written count when <paramref name="partial"/> is true).
    /// </returns>
    ValueTask<ZoneReport> ReportZonesAsync(long startLba, ZoneReportingOptions options, bool partial, Memory<ZoneDescriptor> destination, CancellationToken cancellationToken);

    /// <summary>
    /// Applies a ZBC OUT zone action. For <see cref="ZoneTarget.All"/> the action applies to
    /// every zone it can apply to (OPEN: the CLOSED zones; CLOSE: the open zones; FINISH: the
    /// open and CLOSED zones; RESET WRITE POINTER: every write pointer zone that is not READ
    /// ONLY or OFFLINE). For a single zone, the runtime has checked that
    /// <see cref="ZoneTarget.ZoneStartLba"/> is the first LBA of a zone that is not conventional.
    /// Refusals are <see cref="ScsiException"/>s: <see cref="Sense.InsufficientZoneResources"/>,
    /// <see cref="Sense.ZoneIsReadOnly"/>, <see cref="Sense.ZoneIsOffline"/>.
    /// Called only when the device declares <see cref="DeviceCapabilities.Write"/>.
    /// </summary>
    ValueTask ManageZoneAsync(ZoneAction action, ZoneTarget target, CancellationToken cancellationToken);
}

/// <summary>How a zoned device expects to be written (ZBC 4.3).</summary>
public enum ZoneModel
{
    /// <summary>Host-aware: sequential-write-preferred zones; any write is accepted, sequential ones perform best. Peripheral device type 00h.</summary>
    HostAware,
    /// <summary>Host-managed: sequential-write-required zones; writes must start at the write pointer. Peripheral device type 14h.</summary>
    HostManaged,
}

/// <summary>The ZONE TYPE field of a zone descriptor.</summary>
public enum ZoneType : byte
{
    /// <summary>No write pointer: written like an ordinary disk.</summary>
    Conventional = 1,
    /// <summary>Writes must start at the write pointer (host-managed).</summary>
    SequentialWriteRequired = 2,
    /// <summary>Writes should start at the write pointer (host-aware).</summary>
    SequentialWritePreferred = 3,
}

/// <summary>The ZONE CONDITION field of a zone descriptor.</summary>
public enum ZoneCondition : byte
{
    /// <summary>A conventional zone.</summary>
    NotWritePointer = 0x0,
    /// <summary>The write pointer is at the zone start.</summary>
    Empty = 0x1,
    /// <summary>Opened by a write; counts against the open-zone limit and may be closed by the device.</summary>
    ImplicitlyOpened = 0x2,
    /// <summary>Opened by OPEN ZONE; counts against the open-zone limit until closed by the host.</summary>
    ExplicitlyOpened = 0x3,
    /// <summary>Partly written and not open.</summary>
    Closed = 0x4,
    /// <summary>Readable, not writable; the write pointer is invalid.</summary>
    ReadOnly = 0xD,
    /// <summary>Written to the end, or finished; the write pointer is invalid.</summary>
    Full = 0xE,
    /// <summary>Neither readable nor writable.</summary>
    Offline = 0xF,
}

/// <summary>The REPORTING OPTIONS field of REPORT ZONES: which zones to describe.</summary>
public enum ZoneReportingOptions : byte
{
    /// <summary>Every zone.</summary>
    All = 0x00,
    /// <summary>Zones whose condition is EMPTY.</summary>
    Empty = 0x01,
    /// <summary>Zones whose condition is IMPLICITLY OPENED.</summary>
    ImplicitlyOpened = 0x02,
    /// <summary>Zones whose condition is EXPLICITLY OPENED.</summary>
    ExplicitlyOpened = 0x03,
    /// <summary>Zones whose condition is CLOSED.</summary>
    Closed = 0x04,
    /// <summary>Zones whose condition is FULL.</summary>
    Full = 0x05,
    /// <summary>Zones whose condition is READ ONLY.</summary>
    ReadOnly = 0x06,
    /// <summary>Zones whose condition is OFFLINE.</summary>
    Offline = 0x07,
    /// <summary>Zones with the RESET WRITE POINTER RECOMMENDED attribute.</summary>
    ResetRecommended = 0x10,
    /// <summary>Zones with the NON-SEQUENTIAL WRITE RESOURCES ACTIVE attribute.</summary>
    NonSequential = 0x11,
    /// <summary>Zones whose condition is NOT WRITE POINTER (conventional zones).</summary>
    NotWritePointer = 0x3F,
}

/// <summary>A ZBC OUT service action.</summary>
public enum ZoneAction : byte
{
    /// <summary>CLOSE ZONE: an open zone becomes CLOSED, or EMPTY when nothing was written.</summary>
    Close = 0x01,
    /// <summary>FINISH ZONE: the write pointer moves to the zone end; the zone becomes FULL.</summary>
    Finish = 0x02,
    /// <summary>OPEN ZONE: the zone becomes EXPLICITLY OPENED.</summary>
    Open = 0x03,
    /// <summary>RESET WRITE POINTER: the zone becomes EMPTY, its write pointer at the zone start.</summary>
    ResetWritePointer = 0x04,
}

/// <summary>The zone a ZBC OUT action names: one zone by its start LBA, or all zones (the ALL bit).</summary>
public readonly record struct ZoneTarget
{
    private ZoneTarget(bool all, long zoneStartLba)
    {
        IsAll = all;
        ZoneStartLba = zoneStartLba;
    }

    /// <summary>True for every zone (the ZONE ID is ignored).</summary>
    public bool IsAll { get; }

    /// <summary>The first LBA of the zone, when not <see cref="IsAll"/>.</summary>
    public long ZoneStartLba { get; }

    /// <summary>Every zone the action applies to.</summary>
    public static ZoneTarget All => new(true, 0);

    /// <summary>The zone that starts at <paramref name="zoneStartLba"/>.</summary>
    public static ZoneTarget Zone(long zoneStartLba) => new(false, zoneStartLba);

    /// <inheritdoc />
    public override string ToString() => IsAll ? "all zones" : $"zone at LBA {ZoneStartLba}";
}

/// <summary>One zone, as REPORT ZONES describes it. LBAs and lengths are in logical blocks.</summary>
/// <param name="Start">The zone's first LBA.</param>
/// <param name="Length">The zone's length in blocks.</param>
/// <param name="Type">The zone type.</param>
/// <param name="Condition">The zone condition.</param>
/// <param name="WritePointer">The write pointer LBA; meaningless for conventional, READ ONLY, FULL and OFFLINE zones.</param>
/// <param name="NonSequential">NON_SEQ: non-sequential write resources are active (host-aware zones written out of order).</param>
/// <param name="ResetRecommended">RESET: the device recommends resetting the write pointer.</param>
public readonly record struct ZoneDescriptor(long Start, long Length, ZoneType Type, ZoneCondition Condition, long WritePointer, bool NonSequential = false, bool ResetRecommended = false);

/// <summary>The result of <see cref="IZonedBlockDevice.ReportZonesAsync"/>.</summary>
/// <param name="Written">Descriptors written to the destination.</param>
/// <param name="Matching">Zones that match from the start zone on (at least <paramref name="Written"/>).</param>
public readonly record struct ZoneReport(int Written, long Matching);

/// <summary>The zone model and limits a zoned device reports (VPD page B6h).</summary>
public sealed record ZonedCharacteristics
{
    /// <summary>Host-managed or host-aware.</summary>
    public required ZoneModel Model { get; init; }

    /// <summary>
    /// URSWRZ: reads are unrestricted (reads past a write pointer return zeros and may cross
    /// zones). Linux accepts host-managed devices only with this set.
    /// </summary>
    public bool UnrestrictedReads { get; init; } = true;

    /// <summary>Host-managed: the most sequential-write-required zones that may be open at once; 0 means no limit.</summary>
    public int MaxOpenSequentialWriteRequiredZones { get; init; }

    /// <summary>Host-aware: the optimal number of open sequential-write-preferred zones; 0 means not reported.</summary>
    public int OptimalOpenSequentialWritePreferredZones { get; init; }

    /// <summary>Host-aware: the optimal number of non-sequentially written sequential-write-preferred zones; 0 means not reported.</summary>
    public int OptimalNonSequentiallyWrittenSequentialWritePreferredZones { get; init; }
}
