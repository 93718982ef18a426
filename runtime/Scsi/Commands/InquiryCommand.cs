using System.Text;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

/// <summary>INQUIRY: standard data and the vital product data pages (SPC-4 6.6, 7.8; SBC-3 6.6).</summary>
internal static class InquiryCommand
{
    private static ReadOnlySpan<byte> SupportedPages => [0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2];

    public static ValueTask Execute(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        var alloc = Cdb.U16(cdb, 3);
        var evpd = (cdb[1] & 1) != 0;
        if (!evpd)
        {
            if (cdb[2] != 0)
                throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2));
            return DataIn.End(task, Standard(lun, DataIn.Begin(task, 74)), alloc);
        }
        var d = DataIn.Begin(task, 512);
        int n = cdb[2] switch
        {
            0x00 => PageList(lun, d),
            0x80 => SerialNumber(lun, d),
            0x83 => DeviceIdentification(lun, task.Nexus.TargetPort, d),
            0xB0 => BlockLimits(lun, d),
            0xB1 => BlockDeviceCharacteristics(lun, d),
            0xB2 => LogicalBlockProvisioning(lun, d),
            0xB6 => ZonedCommands.ZonedCharacteristicsPage(lun, d),
            _ => throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2)),
        };
        d[0] = ZonedCommands.PeripheralDeviceType(lun);
        return DataIn.End(task, n, alloc);
    }

    /// <summary>Standard INQUIRY data for an LU that exists.</summary>
    private static int Standard(ScsiLun lun, Span<byte> d)
    {
        d[0] = ZonedCommands.PeripheralDeviceType(lun); // connected; direct access, or host-managed zoned
        d[1] = (byte)(lun.Medium.Removable ? 0x80 : 0); // RMB
        d[2] = 0x06;             // SPC-4
        d[3] = 0x12;             // HISUP, response data format 2
        d[4] = 74 - 5;
        d[5] = 0x30;             // TPGS 11b: implicit and explicit ALUA
        d[5] |= 0x08;            // 3PC: EXTENDED COPY and RECEIVE COPY RESULTS (Scsi/Copy)
        d[7] = 0x02;             // CMDQUE
        Cdb.PutAscii(d, 8, LunIdentity.VendorId, 8);
        Cdb.PutAscii(d, 16, lun.Identity.ProductId, 16);
        Cdb.PutAscii(d, 32, LunIdentity.Revision, 4);
        // version descriptors: SAM-5, SPC-4, SBC-3, iSCSI
        Cdb.Put16(d, 58, 0x00A0);
        Cdb.Put16(d, 60, 0x0460);
        Cdb.Put16(d, 62, 0x04C0);
        Cdb.Put16(d, 64, 0x0960);
        return 74;
    }

    /// <summary>Standard INQUIRY data for a LUN number with no LU behind it (qualifier 011b).</summary>
    public static int NoLogicalUnit(Span<byte> d)
    {
        d[..36].Clear();
        d[0] = 0x7F;
        d[2] = 0x06;
        d[3] = 0x12;
        d[4] = 36 - 5;
        Cdb.PutAscii(d, 8, LunIdentity.VendorId, 8);
        Cdb.PutAscii(d, 16, "NO LUN", 16);
        Cdb.PutAscii(d, 32, LunIdentity.Revision, 4);
        return 36;
    }

    private static int PageList(ScsiLun lun, Span<byte> d)
    {
        d[1] = 0x00;
        SupportedPages.CopyTo(d[4..]);
        var n = SupportedPages.Length;
        n += ZonedCommands.AppendSupportedVpdPages(lun, d[(4 + n)..]);
        Cdb.Put16(d, 2, n);
        return 4 + n;
    }

    private static int SerialNumber(ScsiLun lun, Span<byte> d)
    {
        var serial = lun.Identity.Serial;
        d[1] = 0x80;
        Cdb.Put16(d, 2, serial.Length);
        Cdb.PutAscii(d, 4, serial, serial.Length);
        return 4 + serial.Length;
    }

    private static int DeviceIdentification(ScsiLun lun, TargetPort port, Span<byte> d)
    {
        d[1] = 0x83;
        var n = 4;

        // NAA, locally assigned, associated with the LU
        d[n] = 0x01; d[n + 1] = 0x03; d[n + 3] = 8;
        Cdb.Put64(d, n + 4, lun.Identity.Naa);
        n += 12;

        // T10 vendor id: vendor + serial, associated with the LU
        var t10 = LunIdentity.VendorId.PadRight(8) + lun.Identity.Serial;
        d[n] = 0x02; d[n + 1] = 0x01; d[n + 3] = (byte)t10.Length;
        Cdb.PutAscii(d, n + 4, t10, t10.Length);
        n += 4 + t10.Length;

        var pid = (byte)(port.ProtocolId << 4);
        // relative target port (PIV, association target port)
        d[n] = (byte)(pid | 0x01); d[n + 1] = 0x94; d[n + 3] = 4;
        Cdb.Put16(d, n + 6, port.RelativePortId);
        n += 8;

        // target port group
        d[n] = (byte)(pid | 0x01); d[n + 1] = 0x95; d[n + 3] = 4;
        Cdb.Put16(d, n + 6, port.PortGroup);
        n += 8;

        // SCSI name strings: the target port, then the target device
        n += NameString(d[n..], pid, 0x98, port.Name);
        n += NameString(d[n..], pid, 0xA8, port.TargetName);

        Cdb.Put16(d, 2, n - 4);
        return n;
    }

    private static int NameString(Span<byte> d, byte pid, byte piv_assoc_type, string name)
    {
        var bytes = Encoding.UTF8.GetByteCount(name);
        var len = (bytes + 1 + 3) & ~3; // null terminated, padded to a multiple of 4
        if (4 + len > d.Length)
            return 0;
        d[0] = (byte)(pid | 0x03);
        d[1] = piv_assoc_type;
        d[3] = (byte)len;
        d.Slice(4, len).Clear();
        Encoding.UTF8.GetBytes(name, d[4..]);
        return 4 + len;
    }

    private static int BlockLimits(ScsiLun lun, Span<byte> d)
    {
        var g = lun.Geometry;
        d[1] = 0xB0;
        Cdb.Put16(d, 2, 0x3C);
        // WSNZ=0: WRITE SAME with zero blocks runs to the end of the medium.
        d[5] = AtomicCommands.MaxCompareAndWriteBlocks;
        Cdb.Put16(d, 6, 1 << g.PhysicalBlockExponent); // optimal transfer length granularity: a physical block
        Cdb.Put32(d, 8, (uint)lun.MaxTransferBlocks);
        Cdb.Put32(d, 12, (uint)(g.OptimalTransferBlocks > 0 ? g.OptimalTransferBlocks : Math.Min(lun.MaxTransferBlocks, (1 << 20) / g.LogicalBlockSize)));
        if ((lun.Capabilities & DeviceCapabilities.Unmap) != 0)
        {
            Cdb.Put32(d, 20, MediumCommands.MaxUnmapBlocks);
            Cdb.Put32(d, 24, MediumCommands.MaxUnmapDescriptors);
            Cdb.Put32(d, 28, (uint)Math.Max(1, g.UnmapGranularityBlocks));
            Cdb.Put32(d, 32, 0x80000000u); // UGAVALID, alignment 0
        }
        Cdb.Put64(d, 36, MediumCommands.MaxWriteSameBlocks(lun));
        if (lun.AtomicJournal is not null)
            Cdb.Put32(d, 44, (uint)AtomicCommands.MaxAtomicBlocks(lun)); // no alignment or granularity required
        return 64;
    }

    private static int BlockDeviceCharacteristics(ScsiLun lun, Span<byte> d)
    {
        d[1] = 0xB1;
        Cdb.Put16(d, 2, 0x3C);
        Cdb.Put16(d, 4, (lun.Capabilities & DeviceCapabilities.Rotational) != 0 ? 0 : 1); // 1 = non-rotating
        d[7] = 0x40; // WABEREQ 01b: after SANITIZE BLOCK ERASE, reads succeed (and return zeros)
        d[8] = ZonedCommands.BlockDeviceCharacteristicsZonedField(lun);
        return 64;
    }

    private static int LogicalBlockProvisioning(ScsiLun lun, Span<byte> d)
    {
        d[1] = 0xB2;
        Cdb.Put16(d, 2, 4);
        if ((lun.Capabilities & DeviceCapabilities.Unmap) != 0)
        {
            d[5] = 0xE0; // LBPU, LBPWS, LBPWS10
            if ((lun.Capabilities & DeviceCapabilities.UnmapReadsZeroes) != 0)
                d[5] |= 0x04; // LBPRZ = 001b
            d[6] = 0x02; // thin provisioned
        }
        return 8;
    }
}
