using HandlerRuntime.Sdk;
using HandlerRuntime.Tests.Handlers;

namespace HandlerRuntime.Tests.Scsi;

/// <summary>
/// Every command of the generic emulation, well-formed and malformed, through the real
/// SCSI core over a real ram device (64 MiB, 512-byte blocks: LBAs 0-131071), with the
/// exact status and sense each must produce (../shared/design/scsi.md).
/// </summary>
public sealed class ScsiCoreTableTests(BundledHandlers handlers) : IClassFixture<BundledHandlers>
{
    private const int Blocks = 131072;
    private const int MaxTransferBlocks = HandlerRuntime.Scsi.ScsiLun.MaxTransferBytes / 512;

    public sealed record Row(string Name, byte[] Cdb, byte[]? DataOut, SenseKey? Key = null, byte Asc = 0, byte Ascq = 0)
    {
        public override string ToString() => Name;
    }

    private static Row Good(string name, byte[] cdb, byte[]? data = null) => new(name, cdb, data);
    private static Row Bad(string name, byte[] cdb, SenseKey key, byte asc, byte ascq, byte[]? data = null) => new(name, cdb, data, key, asc, ascq);
    private static Row InvalidField(string name, byte[] cdb, byte[]? data = null) => Bad(name, cdb, SenseKey.IllegalRequest, 0x24, 0, data);
    private static Row OutOfRange(string name, byte[] cdb, byte[]? data = null) => Bad(name, cdb, SenseKey.IllegalRequest, 0x21, 0, data);

    private static byte[] Blocks512(int n, byte fill = 0x5A) => Enumerable.Repeat(fill, n * 512).ToArray();

    public static TheoryData<Row> Rows => new()
    {
        Good("TEST UNIT READY", Cdbs.TestUnitReady()),
        InvalidField("TEST UNIT READY reserved byte 1", Cdbs.TestUnitReady().With(0x01, 1)),
        InvalidField("TEST UNIT READY NACA in control byte", Cdbs.TestUnitReady().With(0x04, 5)),
        Bad("unknown opcode FFh", [0xFF, 0, 0, 0, 0, 0], SenseKey.IllegalRequest, 0x20, 0),
        Bad("unknown opcode 02h", [0x02, 0, 0, 0, 0, 0], SenseKey.IllegalRequest, 0x20, 0),

        Good("REQUEST SENSE", Cdbs.RequestSense()),
        InvalidField("REQUEST SENSE reserved bit", Cdbs.RequestSense().With(0x02, 1)),

        Good("INQUIRY", Cdbs.Inquiry()),
        InvalidField("INQUIRY page code without EVPD", Cdbs.Inquiry(page: 0x80)),
        InvalidField("INQUIRY CMDDT", Cdbs.Inquiry().With(0x02, 1)),
        InvalidField("INQUIRY unknown VPD page", Cdbs.Inquiry(evpd: true, page: 0x99)),
        Good("INQUIRY VPD 00h", Cdbs.Inquiry(true, 0x00)),
        Good("INQUIRY VPD 80h", Cdbs.Inquiry(true, 0x80)),
        Good("INQUIRY VPD 83h", Cdbs.Inquiry(true, 0x83)),
        Good("INQUIRY VPD B0h", Cdbs.Inquiry(true, 0xB0)),
        Good("INQUIRY VPD B1h", Cdbs.Inquiry(true, 0xB1)),
        Good("INQUIRY VPD B2h", Cdbs.Inquiry(true, 0xB2)),

        Good("READ CAPACITY(10)", Cdbs.ReadCapacity10()),
        InvalidField("READ CAPACITY(10) LBA without PMI", Cdbs.ReadCapacity10().With(1, 5)),
        Good("READ CAPACITY(16)", Cdbs.ReadCapacity16()),
        InvalidField("SERVICE ACTION IN(16) unknown service action", Cdbs.ReadCapacity16().With(0x1F, 1)),
        InvalidField("READ CAPACITY(16) LBA without PMI", Cdbs.ReadCapacity16().With(1, 9)),

        Good("READ(6) 0 means 256 blocks", Cdbs.Read6(0, 0)),
        OutOfRange("READ(6) past the end", Cdbs.Read6(Blocks - 1, 2)),
        Good("READ(10)", Cdbs.Read10(0, 8)),
        Good("READ(10) zero blocks", Cdbs.Read10(0, 0)),
        Good("READ(10) last block", Cdbs.Read10(Blocks - 1, 1)),
        OutOfRange("READ(10) across the end", Cdbs.Read10(Blocks - 1, 2)),
        OutOfRange("READ(10) zero blocks one past the end", Cdbs.Read10(Blocks, 0)),
        OutOfRange("READ(10) LBA 2^31", Cdbs.Read10(0x8000_0000, 1)),
        OutOfRange("READ(10) LBA -1", Cdbs.Read10(uint.MaxValue, 1)),
        InvalidField("READ(10) RDPROTECT", Cdbs.Read10(0, 1, 0x20)),
        InvalidField("READ(10) RARC", Cdbs.Read10(0, 1, 0x04)),
        Good("READ(10) DPO FUA", Cdbs.Read10(0, 1, 0x18)),
        InvalidField("READ(16) longer than the maximum transfer", Cdbs.Read16(0, MaxTransferBlocks + 1)),
        Good("READ(12)", Cdbs.Read12(100, 8)),
        OutOfRange("READ(12) across the end", Cdbs.Read12(Blocks - 4, 8)),
        Good("READ(16)", Cdbs.Read16(100, 8)),
        OutOfRange("READ(16) LBA 2^63", Cdbs.Read16(1UL << 63, 1)),
        OutOfRange("READ(16) LBA -1", Cdbs.Read16(ulong.MaxValue, 1)),

        Good("WRITE(6)", Cdbs.Write6(10, 2), Blocks512(2)),
        Good("WRITE(10)", Cdbs.Write10(10, 2), Blocks512(2)),
        Good("WRITE(10) FUA", Cdbs.Write10(10, 2, 0x08), Blocks512(2)),
        Good("WRITE(10) zero blocks", Cdbs.Write10(0, 0)),
        Bad("WRITE(10) less data than the CDB asks", Cdbs.Write10(10, 2), SenseKey.IllegalRequest, 0x0E, 0x03, Blocks512(1)),
        OutOfRange("WRITE(10) across the end", Cdbs.Write10(Blocks - 1, 2), Blocks512(2)),
        InvalidField("WRITE(10) WRPROTECT", Cdbs.Write10(0, 1, 0x20), Blocks512(1)),
        Good("WRITE(12)", Cdbs.Write12(20, 1), Blocks512(1)),
        Good("WRITE(16)", Cdbs.Write16(30, 1), Blocks512(1)),
        OutOfRange("WRITE(16) LBA -1", Cdbs.Write16(ulong.MaxValue, 1), Blocks512(1)),

        Good("VERIFY(10) BYTCHK 0", Cdbs.Verify10(0, 8)),
        InvalidField("VERIFY(10) BYTCHK 10b", Cdbs.Verify10(0, 1, 0x04), Blocks512(1)),
        InvalidField("VERIFY(10) VRPROTECT", Cdbs.Verify10(0, 1, 0x20)),
        OutOfRange("VERIFY(10) across the end", Cdbs.Verify10(Blocks - 1, 2)),
        Good("VERIFY(12)", Cdbs.Verify12(0, 8)),
        Good("VERIFY(16)", Cdbs.Verify16(0, 8)),

        Good("SYNCHRONIZE CACHE(10)", Cdbs.SyncCache10()),
        Good("SYNCHRONIZE CACHE(10) IMMED", Cdbs.SyncCache10().With(0x02, 1)),
        OutOfRange("SYNCHRONIZE CACHE(10) past the end", Cdbs.SyncCache10(Blocks, 1)),
        Good("SYNCHRONIZE CACHE(16)", Cdbs.SyncCache16(0, 100)),

        Good("WRITE SAME(10)", Cdbs.WriteSame10(200, 16), Blocks512(1)),
        Good("WRITE SAME(10) zero blocks runs to the end (WSNZ=0)", Cdbs.WriteSame10(Blocks - 10, 0), Blocks512(1)),
        Bad("WRITE SAME(10) with two blocks of data-out", Cdbs.WriteSame10(200, 1), SenseKey.IllegalRequest, 0x0E, 0x03, Blocks512(2)),
        Bad("WRITE SAME(16) NDOB with data-out", Cdbs.WriteSame16(200, 1, 0x01), SenseKey.IllegalRequest, 0x0E, 0x03, Blocks512(1)),
        InvalidField("WRITE SAME(10) ANCHOR", Cdbs.WriteSame10(200, 1, 0x10), Blocks512(1)),
        Good("WRITE SAME(10) UNMAP", Cdbs.WriteSame10(200, 16, 0x08), Blocks512(1, 0)),
        OutOfRange("WRITE SAME(10) across the end", Cdbs.WriteSame10(Blocks - 1, 2), Blocks512(1)),
        Good("WRITE SAME(16) NDOB", Cdbs.WriteSame16(300, 16, 0x09)),
        Good("WRITE SAME(16)", Cdbs.WriteSame16(300, 16), Blocks512(1)),

        Good("UNMAP empty parameter list", Cdbs.Unmap(0)),
        Good("UNMAP one descriptor", Cdbs.Unmap(24), Cdbs.UnmapList((100, 8))),
        Good("UNMAP several descriptors", Cdbs.Unmap(56), Cdbs.UnmapList((100, 8), (1000, 1), (Blocks - 1, 1))),
        Bad("UNMAP parameter list shorter than its header", Cdbs.Unmap(4), SenseKey.IllegalRequest, 0x1A, 0, new byte[4]),
        OutOfRange("UNMAP descriptor past the end", Cdbs.Unmap(24), Cdbs.UnmapList((Blocks - 1, 2))),
        InvalidField("UNMAP ANCHOR", Cdbs.Unmap(24, 0x01), Cdbs.UnmapList((0, 1))),

        Good("MODE SENSE(6) all pages", Cdbs.ModeSense6(0x3F)),
        Good("MODE SENSE(6) caching", Cdbs.ModeSense6(0x08)),
        Good("MODE SENSE(6) changeable control", Cdbs.ModeSense6(0x0A, pc: 1)),
        Good("MODE SENSE(6) default all", Cdbs.ModeSense6(0x3F, pc: 2)),
        Bad("MODE SENSE(6) saved values", Cdbs.ModeSense6(0x3F, pc: 3), SenseKey.IllegalRequest, 0x39, 0),
        InvalidField("MODE SENSE(6) unknown page", Cdbs.ModeSense6(0x19)),
        InvalidField("MODE SENSE(6) unknown subpage", Cdbs.ModeSense6(0x08, subpage: 1)),
        Good("MODE SENSE(6) all subpages", Cdbs.ModeSense6(0x3F, subpage: 0xFF)),
        Good("MODE SENSE(10) long LBA", Cdbs.ModeSense10(0x3F, llbaa: true)),
        InvalidField("MODE SENSE(10) reserved byte 4", Cdbs.ModeSense10(0x3F).With(1, 4)),
        InvalidField("MODE SELECT(6) PF=0", Cdbs.ModeSelect6(12, pf: false), new byte[12]),
        InvalidField("MODE SELECT(6) SP=1", Cdbs.ModeSelect6(12, sp: true), new byte[12]),
        Good("MODE SELECT(6) empty", Cdbs.ModeSelect6(0)),
        Bad("MODE SELECT(6) shorter than its header", Cdbs.ModeSelect6(2), SenseKey.IllegalRequest, 0x1A, 0, new byte[2]),

        Good("REPORT LUNS", Cdbs.ReportLuns()),
        InvalidField("REPORT LUNS allocation below 16", Cdbs.ReportLuns(alloc: 15)),
        InvalidField("REPORT LUNS unknown SELECT REPORT", Cdbs.ReportLuns(select: 0x7F)),
        Good("REPORT LUNS well-known only", Cdbs.ReportLuns(select: 1)),
    };

    private async Task<ScsiHarness> NewHarnessAsync(bool readOnly = false)
    {
        var dev = await handlers.OpenAsync("ram/@", Blocks * 512L);
        var h = new ScsiHarness(dev, readOnly: readOnly);
        await h.ClearUnitAttentionAsync();
        return h;
    }

    [Theory]
    [MemberData(nameof(Rows))]
    public async Task Command_gets_the_exact_status_and_sense(Row row)
    {
        await using var h = await NewHarnessAsync();
        var r = await h.RunAsync(row.Cdb, row.DataOut);
        if (row.Key is null)
        {
            Assert.True(r.Good, $"{row.Name}: {r}");
        }
        else
        {
            Assert.Equal(ScsiStatus.CheckCondition, r.Status);
            Assert.Equal((row.Key.Value, row.Asc, row.Ascq), (r.Sense.Key, r.Sense.Asc, r.Sense.Ascq));
            // Fixed format on the wire unless D_SENSE is set.
            Assert.Equal(0x70, r.SenseBytes[0] & 0x7F);
            Assert.Equal((byte)row.Key.Value, r.SenseBytes[2]);
            Assert.Equal(row.Asc, r.SenseBytes[12]);
            Assert.Equal(row.Ascq, r.SenseBytes[13]);
        }
    }

    [Fact]
    public async Task Invalid_field_sense_points_at_the_byte_and_bit()
    {
        await using var h = await NewHarnessAsync();
        var r = await h.RunAsync(Cdbs.Read10(0, 1, 0x20)); // RDPROTECT = 001b: byte 1, bit 5
        Assert.Equal(0xC8 | 5, r.SenseBytes[15]); // SKSV, C/D, BPV, bit 5
        Assert.Equal(1, r.SenseBytes[17]);
    }

    [Fact]
    public async Task Written_data_reads_back_through_every_read_and_write_size()
    {
        await using var h = await NewHarnessAsync();
        var rng = new Random(5);
        var data = new byte[4 * 512];
        rng.NextBytes(data);
        Assert.True((await h.RunAsync(Cdbs.Write16(1000, 4), data)).Good);
        Assert.Equal(data, (await h.RunAsync(Cdbs.Read10(1000, 4))).DataIn);
        Assert.Equal(data, (await h.RunAsync(Cdbs.Read12(1000, 4))).DataIn);
        Assert.Equal(data, (await h.RunAsync(Cdbs.Read6(1000, 4))).DataIn);
        Assert.True((await h.RunAsync(Cdbs.Write6(2000, 1), data[..512])).Good);
        Assert.Equal(data[..512], (await h.RunAsync(Cdbs.Read16(2000, 1))).DataIn);
        Assert.Equal(256 * 512, (await h.RunAsync(Cdbs.Read6(0, 0))).DataIn.Length);
    }

    [Fact]
    public async Task Verify_compares_and_reports_the_offset_of_the_first_difference()
    {
        await using var h = await NewHarnessAsync();
        var data = Blocks512(4, 0x11);
        Assert.True((await h.RunAsync(Cdbs.Write10(50, 4), data)).Good);
        Assert.True((await h.RunAsync(Cdbs.Verify10(50, 4, 0x02), data)).Good);
        var wrong = (byte[])data.Clone();
        wrong[1234] ^= 0xFF;
        var r = await h.RunAsync(Cdbs.Verify16(50, 4, 0x02), wrong);
        Assert.Equal((SenseKey.Miscompare, (byte)0x1D, (byte)0), (r.Sense.Key, r.Sense.Asc, r.Sense.Ascq));
        Assert.Equal(1234UL, r.Sense.Information);
        Assert.Equal(0xF0, r.SenseBytes[0]); // VALID + 70h
        Assert.Equal(1234U, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(r.SenseBytes.AsSpan(3)));
        // BYTCHK 11b: one block compared with each block of the range.
        Assert.True((await h.RunAsync(Cdbs.Verify10(50, 4, 0x06), Blocks512(1, 0x11))).Good);
        Assert.Equal(SenseKey.Miscompare, (await h.RunAsync(Cdbs.Verify10(50, 4, 0x06), Blocks512(1, 0x12))).Sense.Key);
    }

    [Fact]
    public async Task Write_same_and_unmap_change_what_reads_back()
    {
        await using var h = await NewHarnessAsync();
        var pattern = Blocks512(1, 0xC3);
        pattern[0] = 1;
        Assert.True((await h.RunAsync(Cdbs.WriteSame10(400, 8), pattern)).Good);
        var read = (await h.RunAsync(Cdbs.Read10(400, 8))).DataIn;
        for (var i = 0; i < 8; i++)
            Assert.Equal(pattern, read[(i * 512)..((i + 1) * 512)]);
        Assert.True((await h.RunAsync(Cdbs.Unmap(24), Cdbs.UnmapList((402, 2)))).Good);
        read = (await h.RunAsync(Cdbs.Read10(400, 8))).DataIn;
        Assert.All(read[(2 * 512)..(4 * 512)], b => Assert.Equal(0, b));
        Assert.Equal(pattern, read[..512]);
        Assert.True((await h.RunAsync(Cdbs.WriteSame16(400, 8, 0x09))).Good); // UNMAP + NDOB
        Assert.All((await h.RunAsync(Cdbs.Read10(400, 8))).DataIn, b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task Inquiry_data_and_vpd_pages_describe_the_lu()
    {
        await using var h = await NewHarnessAsync();
        var std = (await h.RunAsync(Cdbs.Inquiry())).DataIn;
        Assert.Equal(0x00, std[0]);
        Assert.Equal(0x06, std[2]);
        Assert.Equal(std.Length - 5, std[4]);
        Assert.Equal(0x02, std[7] & 0x02); // CMDQUE
        Assert.Equal("HRT     ", System.Text.Encoding.ASCII.GetString(std, 8, 8));
        Assert.Equal(5, (await h.RunAsync(Cdbs.Inquiry(alloc: 5))).DataIn.Length);

        var pages = (await h.RunAsync(Cdbs.Inquiry(true, 0))).DataIn;
        Assert.Equal(new byte[] { 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2 }, pages[4..(4 + pages[3])]);

        var serial = (await h.RunAsync(Cdbs.Inquiry(true, 0x80))).DataIn;
        Assert.Equal(h.Lun.Identity.Serial, System.Text.Encoding.ASCII.GetString(serial, 4, serial[3]));

        var ids = (await h.RunAsync(Cdbs.Inquiry(true, 0x83))).DataIn;
        Assert.Equal(0x01, ids[4]); // binary
        Assert.Equal(0x03, ids[5]); // LU, NAA
        Assert.Equal(h.Lun.Identity.Naa, System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(ids.AsSpan(8)));
        Assert.Equal(3, ids[8] >> 4); // NAA 3h, locally assigned

        var limits = (await h.RunAsync(Cdbs.Inquiry(true, 0xB0))).DataIn;
        Assert.Equal((uint)MaxTransferBlocks, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(limits.AsSpan(8)));
        Assert.True(System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(limits.AsSpan(20)) > 0); // max unmap LBA count
        var chars = (await h.RunAsync(Cdbs.Inquiry(true, 0xB1))).DataIn;
        Assert.Equal(1, chars[5]); // non-rotating
        var prov = (await h.RunAsync(Cdbs.Inquiry(true, 0xB2))).DataIn;
        Assert.Equal(0xE0, prov[5] & 0xE0); // LBPU, LBPWS, LBPWS10
        Assert.Equal(0x04, prov[5] & 0x1C); // LBPRZ 001b
    }

    [Fact]
    public async Task Read_capacity_reports_size_block_and_thin_provisioning()
    {
        await using var h = await NewHarnessAsync();
        var rc10 = (await h.RunAsync(Cdbs.ReadCapacity10())).DataIn;
        Assert.Equal((uint)Blocks - 1, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(rc10));
        Assert.Equal(512U, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(rc10.AsSpan(4)));
        var rc16 = (await h.RunAsync(Cdbs.ReadCapacity16())).DataIn;
        Assert.Equal((ulong)Blocks - 1, System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(rc16));
        Assert.Equal(0xC0, rc16[14] & 0xC0); // LBPME, LBPRZ
        Assert.Equal(12, (await h.RunAsync(Cdbs.ReadCapacity16(alloc: 12))).DataIn.Length);
    }

    [Fact]
    public async Task Luns_that_do_not_exist_answer_as_spc_says()
    {
        await using var h = await NewHarnessAsync();
        var inq = await h.RunAsync(Cdbs.Inquiry(), lun: 5);
        Assert.True(inq.Good);
        Assert.Equal(0x7F, inq.DataIn[0]); // qualifier 011b, type 1Fh
        var tur = await h.RunAsync(Cdbs.TestUnitReady(), lun: 5);
        Assert.Equal((SenseKey.IllegalRequest, (byte)0x25), (tur.Sense.Key, tur.Sense.Asc));
        var rs = await h.RunAsync(Cdbs.RequestSense(), lun: 5);
        Assert.True(rs.Good);
        Assert.Equal(0x25, rs.DataIn[12]);
        var luns = (await h.RunAsync(Cdbs.ReportLuns(), lun: 5)).DataIn;
        Assert.Equal(8U, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(luns));
        Assert.Equal(16, luns.Length);
    }

    [Fact]
    public async Task Unit_attentions_are_per_nexus_and_not_consumed_by_inquiry()
    {
        await using var h = await NewHarnessAsync();
        var other = ScsiHarness.NewNexus();
        Assert.True((await h.RunAsync(Cdbs.Inquiry(), nexus: other)).Good);
        var first = await h.RunAsync(Cdbs.TestUnitReady(), nexus: other);
        Assert.Equal((SenseKey.UnitAttention, (byte)0x29, (byte)0), (first.Sense.Key, first.Sense.Asc, first.Sense.Ascq));
        Assert.True((await h.RunAsync(Cdbs.TestUnitReady(), nexus: other)).Good);
        Assert.True((await h.RunAsync(Cdbs.TestUnitReady())).Good); // the default nexus cleared its own earlier

        // REQUEST SENSE returns a pending unit attention as data and clears it.
        var third = ScsiHarness.NewNexus();
        var rs = await h.RunAsync(Cdbs.RequestSense(), nexus: third);
        Assert.True(rs.Good);
        Assert.Equal((byte)SenseKey.UnitAttention, rs.DataIn[2]);
        Assert.Equal(0x29, rs.DataIn[12]);
        Assert.True((await h.RunAsync(Cdbs.TestUnitReady(), nexus: third)).Good);
    }

    [Fact]
    public async Task Mode_select_changes_wce_swp_and_d_sense_and_tells_other_initiators()
    {
        await using var h = await NewHarnessAsync();
        var other = ScsiHarness.NewNexus();
        await h.ClearUnitAttentionAsync(other);

        var caching = (await h.RunAsync(Cdbs.ModeSense6(0x08, dbd: true))).DataIn;
        Assert.Equal(0x04, caching[4 + 2] & 0x04); // WCE on
        var page = caching[4..];
        page[0] &= 0x3F; // PS is reserved in MODE SELECT
        page[2] &= 0xFB; // WCE off
        var list = new byte[4].Concat(page).ToArray();
        Assert.True((await h.RunAsync(Cdbs.ModeSelect6((byte)list.Length), list)).Good);
        Assert.False(h.Lun.WriteCacheEnabled);
        Assert.Equal(0, (await h.RunAsync(Cdbs.ModeSense6(0x08, dbd: true))).DataIn[6] & 0x04);
        var ua = await h.RunAsync(Cdbs.TestUnitReady(), nexus: other);
        Assert.Equal((SenseKey.UnitAttention, (byte)0x2A, (byte)0x01), (ua.Sense.Key, ua.Sense.Asc, ua.Sense.Ascq));

        // A field that is not changeable is refused, and nothing changes.
        page[3] = 0x7F;
        list = new byte[4].Concat(page).ToArray();
        var bad = await h.RunAsync(Cdbs.ModeSelect6((byte)list.Length), list);
        Assert.Equal((SenseKey.IllegalRequest, (byte)0x26), (bad.Sense.Key, bad.Sense.Asc));

        // Control page: SWP makes writes fail with DATA PROTECT, D_SENSE switches to descriptor sense.
        var control = (await h.RunAsync(Cdbs.ModeSense10(0x0A, dbd: true))).DataIn[8..];
        control[0] &= 0x3F;
        control[2] |= 0x04; // D_SENSE
        control[4] |= 0x08; // SWP
        var list10 = new byte[8].Concat(control).ToArray();
        Assert.True((await h.RunAsync(Cdbs.ModeSelect10((ushort)list10.Length), list10)).Good);
        var w = await h.RunAsync(Cdbs.Write10(0, 1), Blocks512(1));
        Assert.Equal((SenseKey.DataProtect, (byte)0x27), (w.Sense.Key, w.Sense.Asc));
        Assert.Equal(0x72, w.SenseBytes[0]); // descriptor format
        Assert.Equal(0x80, (await h.RunAsync(Cdbs.ModeSense6(0x3F))).DataIn[2] & 0x80); // WP in the header
        Assert.True((await h.RunAsync(Cdbs.Read10(0, 1))).Good);
    }

    [Fact]
    public async Task A_mode_change_that_is_undone_before_another_initiator_looks_is_not_reported_to_it()
    {
        await using var h = await NewHarnessAsync();
        var other = ScsiHarness.NewNexus();
        await h.ClearUnitAttentionAsync(other);
        var control = (await h.RunAsync(Cdbs.ModeSense10(0x0A, dbd: true))).DataIn[8..];
        control[0] &= 0x3F;
        byte[] WithSwp(bool on) { var p = (byte[])control.Clone(); p[4] = (byte)(on ? p[4] | 0x08 : p[4] & ~0x08); return new byte[8].Concat(p).ToArray(); }

        Assert.True((await h.RunAsync(Cdbs.ModeSelect10((ushort)WithSwp(true).Length), WithSwp(true))).Good);
        Assert.True((await h.RunAsync(Cdbs.ModeSelect10((ushort)WithSwp(false).Length), WithSwp(false))).Good);
        Assert.True((await h.RunAsync(Cdbs.TestUnitReady(), nexus: other)).Good); // set and restored: nothing to tell

        Assert.True((await h.RunAsync(Cdbs.ModeSelect10((ushort)WithSwp(true).Length), WithSwp(true))).Good);
        var ua = await h.RunAsync(Cdbs.TestUnitReady(), nexus: other); // seen: the change stands
        Assert.Equal((SenseKey.UnitAttention, (byte)0x2A, (byte)0x01), (ua.Sense.Key, ua.Sense.Asc, ua.Sense.Ascq));
        Assert.True((await h.RunAsync(Cdbs.ModeSelect10((ushort)WithSwp(false).Length), WithSwp(false))).Good);
        ua = await h.RunAsync(Cdbs.TestUnitReady(), nexus: other); // it saw SWP on, so going back is a change for it
        Assert.Equal((byte)0x2A, ua.Sense.Asc);
    }

    [Fact]
    public async Task A_read_only_lun_refuses_writes_with_data_protect()
    {
        await using var h = await NewHarnessAsync(readOnly: true);
        foreach (var cdb in new[] { Cdbs.Write10(0, 1), Cdbs.WriteSame10(0, 1), Cdbs.Unmap(24) })
        {
            var r = await h.RunAsync(cdb, cdb[0] == 0x42 ? Cdbs.UnmapList((0, 1)) : Blocks512(1));
            Assert.Equal((SenseKey.DataProtect, (byte)0x27, (byte)0), (r.Sense.Key, r.Sense.Asc, r.Sense.Ascq));
        }
        Assert.True((await h.RunAsync(Cdbs.Read10(0, 1))).Good);
    }
}
