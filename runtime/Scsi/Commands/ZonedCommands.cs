using System.Buffers;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

/// <summary>
/// Zoned block commands (ZBC): ZBC IN / REPORT ZONES and ZBC OUT / CLOSE, FINISH, OPEN and
/// RESET WRITE POINTER, decoded and validated here and carried out by the device's
/// <see cref="IZonedBlockDevice"/>; plus the identification data a zoned LU reports
/// (device type, VPD B1h ZONED field, VPD B6h, RC BASIS). The write-pointer checks of
/// READ and WRITE are the device's, in its ReadAsync/WriteAsync.
/// </summary>
internal static class ZonedCommands
{
    public const byte HostManagedDeviceType = 0x14;
    private const int HeaderBytes = 64;
    private const int DescriptorBytes = 64;

    /// <summary>PERIPHERAL DEVICE TYPE: 14h for a host-managed zoned device, 00h otherwise (host-aware devices are direct access).</summary>
    public static byte PeripheralDeviceType(ScsiLun lun)
        => lun.Device.Zoned is { ZonedCharacteristics.Model: ZoneModel.HostManaged } ? HostManagedDeviceType : (byte)0x00;

    /// <summary>VPD B1h byte 8: the ZONED field (bits 5-4), 01b for host-aware; host-managed devices say so by their device type.</summary>
    public static byte BlockDeviceCharacteristicsZonedField(ScsiLun lun)
        => lun.Device.Zoned is { ZonedCharacteristics.Model: ZoneModel.HostAware } ? (byte)0x10 : (byte)0x00;

    /// <summary>READ CAPACITY(16) byte 12: RC BASIS (bits 5-4) 01b, the returned capacity is the whole device's.</summary>
    public static byte ReadCapacityBasis(ScsiLun lun) => lun.Device.Zoned is not null ? (byte)0x10 : (byte)0x00;

    /// <summary>Appends B6h to the supported VPD page list of a zoned LU; returns the bytes added.</summary>
    public static int AppendSupportedVpdPages(ScsiLun lun, Span<byte> d)
    {
        if (lun.Device.Zoned is null)
            return 0;
        d[0] = 0xB6;
        return 1;
    }

    /// <summary>VPD B6h, zoned block device characteristics (ZBC 6.5.2).</summary>
    public static int ZonedCharacteristicsPage(ScsiLun lun, Span<byte> d)
    {
        if (lun.Device.Zoned is not { } zoned)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2));
        var c = zoned.ZonedCharacteristics;
        d[1] = 0xB6;
        Cdb.Put16(d, 2, 0x3C);
        d[4] = c.UnrestrictedReads ? (byte)0x01 : (byte)0x00; // URSWRZ
        Cdb.Put32(d, 8, CountOrUnreported(c.Model == ZoneModel.HostAware ? c.OptimalOpenSequentialWritePreferredZones : 0));
        Cdb.Put32(d, 12, CountOrUnreported(c.Model == ZoneModel.HostAware ? c.OptimalNonSequentiallyWrittenSequentialWritePreferredZones : 0));
        Cdb.Put32(d, 16, CountOrUnreported(c.Model == ZoneModel.HostManaged ? c.MaxOpenSequentialWriteRequiredZones : 0));
        return 64;
    }

    // FFFFFFFFh: "not reported" for the optimal counts, "no limit" for the maximum.
    private static uint CountOrUnreported(int count) => count > 0 ? (uint)count : uint.MaxValue;

    /// <summary>ZBC IN, REPORT ZONES (ZBC 5.2).</summary>
    public static ValueTask ReportZones(ScsiLun lun, ScsiTask task)
    {
        var zoned = Zoned(lun);
        var cdb = task.CdbSpan;
        var startLba = Cdb.U64(cdb, 2);
        var allocation = Cdb.U32(cdb, 10);
        var partial = (cdb[14] & 0x80) != 0;
        var option = (byte)(cdb[14] & 0x3F);
        if (!IsReportingOption(option))
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(14, 5));
        if (startLba >= (ulong)lun.BlockCount)
            throw new ScsiException(Sense.LbaOutOfRange);
        if (allocation == 0)
            return default;
        return ReportZonesAsync(lun, task, zoned, (long)startLba, (ZoneReportingOptions)option, partial, allocation);
    }

    private static bool IsReportingOption(byte option) => option is <= 0x07 or 0x10 or 0x11 or 0x3F;

    private static async ValueTask ReportZonesAsync(ScsiLun lun, ScsiTask task, IZonedBlockDevice zoned, long startLba, ZoneReportingOptions option, bool partial, uint allocation)
    {
        // Fill what the allocation length can carry: with PARTIAL only whole descriptors
        // count; without it a truncated last descriptor is still transferred.
        var bytes = (int)Math.Min(allocation, (uint)ScsiLun.MaxTransferBytes);
        var room = bytes <= HeaderBytes ? 0 : (bytes - HeaderBytes) / DescriptorBytes;
        var slots = partial || bytes <= HeaderBytes ? room : (bytes - HeaderBytes + DescriptorBytes - 1) / DescriptorBytes;
        var descriptors = ArrayPool<ZoneDescriptor>.Shared.Rent(Math.Max(slots, 1));
        try
        {
            var report = await zoned.ReportZonesAsync(startLba, option, partial, descriptors.AsMemory(0, slots), task.AbortToken);
            var written = Math.Clamp(report.Written, 0, slots);
            var listed = partial ? Math.Min(written, room) : Math.Max(report.Matching, written);
            var d = DataIn.Begin(task, HeaderBytes + written * DescriptorBytes);
            Cdb.Put32(d, 0, (uint)Math.Min(listed * DescriptorBytes, uint.MaxValue - uint.MaxValue % DescriptorBytes));
            d[4] = SameField(descriptors.AsSpan(0, written), complete: written == listed);
            Cdb.Put64(d, 8, (ulong)lun.BlockCount - 1);
            for (var i = 0; i < written; i++)
                PutDescriptor(d.Slice(HeaderBytes + i * DescriptorBytes, DescriptorBytes), descriptors[i]);
            await DataIn.End(task, HeaderBytes + written * DescriptorBytes, allocation);
        }
        finally
        {
            ArrayPool<ZoneDescriptor>.Shared.Return(descriptors);
        }
    }

    private static void PutDescriptor(Span<byte> d, in ZoneDescriptor zone)
    {
        d[0] = (byte)((byte)zone.Type & 0x0F);
        d[1] = (byte)(((byte)zone.Condition & 0x0F) << 4 | (zone.NonSequential ? 0x02 : 0) | (zone.ResetRecommended ? 0x01 : 0));
        Cdb.Put64(d, 8, (ulong)zone.Length);
        Cdb.Put64(d, 16, (ulong)zone.Start);
        Cdb.Put64(d, 24, (ulong)zone.WritePointer);
    }

    /// <summary>
    /// The SAME field (ZBC 5.2.2): 1 all zones alike, 2 alike but the last shorter, 3 same
    /// length but different types, 0 anything else, or when the list is not complete here.
    /// </summary>
    private static byte SameField(ReadOnlySpan<ZoneDescriptor> zones, bool complete)
    {
        if (!complete || zones.IsEmpty)
            return 0;
        var first = zones[0];
        bool sameType = true, sameLength = true, shorterLast = false;
        for (var i = 1; i < zones.Length; i++)
        {
            sameType &= zones[i].Type == first.Type;
            if (zones[i].Length != first.Length)
            {
                if (i == zones.Length - 1 && zones[i].Length < first.Length)
                    shorterLast = true;
                else
                    sameLength = false;
            }
        }
        if (sameType && sameLength)
            return shorterLast ? (byte)2 : (byte)1;
        return !shorterLast && sameLength ? (byte)3 : (byte)0;
    }

    /// <summary>ZBC OUT: CLOSE ZONE, FINISH ZONE, OPEN ZONE, RESET WRITE POINTER (ZBC 5.3-5.6).</summary>
    public static ValueTask ManageZone(ScsiLun lun, ScsiTask task)
    {
        var zoned = Zoned(lun);
        var cdb = task.CdbSpan;
        var action = (ZoneAction)(cdb[1] & 0x1F);
        if ((cdb[14] & 0x01) != 0)
            return zoned.ManageZoneAsync(action, ZoneTarget.All, task.AbortToken);
        var zoneId = Cdb.U64(cdb, 2);
        if (zoneId >= (ulong)lun.BlockCount)
            throw new ScsiException(Sense.LbaOutOfRange);
        return ManageOneZoneAsync(zoned, action, (long)zoneId, task.AbortToken);
    }

    private static async ValueTask ManageOneZoneAsync(IZonedBlockDevice zoned, ZoneAction action, long zoneId, CancellationToken ct)
    {
        // The zone id must name the start of a write pointer zone; the device knows the layout.
        var one = new ZoneDescriptor[1];
        var report = await zoned.ReportZonesAsync(zoneId, ZoneReportingOptions.All, partial: true, one, ct);
        if (report.Written < 1 || one[0].Start != zoneId || one[0].Type == ZoneType.Conventional)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2));
        await zoned.ManageZoneAsync(action, ZoneTarget.Zone(zoneId), ct);
    }

    // The dispatcher routes ZBC commands only to zoned LUNs; this guards the executors.
    private static IZonedBlockDevice Zoned(ScsiLun lun)
        => lun.Device.Zoned ?? throw new ScsiException(Sense.InvalidOpcode);
}
