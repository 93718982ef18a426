using System.Buffers.Binary;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>
/// Every error of docs/zbc.md's sense table, and the CDB checks of ZBC IN and OUT, each with
/// its exact sense key, ASC and ASCQ, through the SCSI core on real files.
/// Devices: 8 zones of 2048 blocks, zone 0 conventional, at most 2 open zones.
/// </summary>
public sealed class ZoneErrorTests : IDisposable
{
    private const long ZoneBlocks = 2048;
    private const long Capacity = 8 * ZoneBlocks;
    private const string Hm = "model-HM/zsize-1/conv-1/open-2";
    private const string HmRestricted = "model-HM/zsize-1/conv-1/open-2/urswrz-0";
    private readonly TempDir dir = new("zbc-errors");

    public void Dispose() => dir.Dispose();

    public static TheoryData<string, string, string, byte, byte, byte> Errors => new()
    {
        // unaligned write: a sequential-write-required zone written away from its pointer
        { Hm, "", "w1@4:4", 0x5, 0x21, 0x04 },
        { Hm, "w1:8", "w1+1:4", 0x5, 0x21, 0x04 },
        { Hm, "w1:8", "w1@0:4", 0x5, 0x21, 0x04 },
        { Hm, "w1:8 c1", "w1@16:4", 0x5, 0x21, 0x04 },
        // write boundary violation: across a sequential zone's end, or conventional into sequential
        { Hm, "", "w1@2040:16", 0x5, 0x21, 0x05 },
        { Hm, "w1:2040", "w1:16", 0x5, 0x21, 0x05 },
        { Hm, "", "w0@2040:16", 0x5, 0x21, 0x05 },
        // write to a FULL zone
        { Hm, "we1", "w1@0:1", 0x5, 0x24, 0x00 },
        { Hm, "f1", "w1@0:1", 0x5, 0x24, 0x00 },
        { Hm, "w1:8 fA", "w1@8:1", 0x5, 0x24, 0x00 },
        // with URSWRZ 0: reading past the write pointer, or across zones
        { HmRestricted, "w1:8", "rd1@0:16", 0x5, 0x21, 0x06 },
        { HmRestricted, "", "rd1@0:1", 0x5, 0x21, 0x06 },
        { HmRestricted, "w1:8 c1", "rd1@7:2", 0x5, 0x21, 0x06 },
        { HmRestricted, "we1 we2", "rd1@2040:16", 0x5, 0x21, 0x07 },
        { HmRestricted, "we1", "rd0@2040:16", 0x5, 0x21, 0x07 },
        // insufficient zone resources: explicit opens alone fill the limit
        { Hm, "o1 o2", "w3:8", 0x7, 0x55, 0x0E },
        { Hm, "o1 o2", "o3", 0x7, 0x55, 0x0E },
        { Hm, "w1:8 c1 o2 o3", "w1:8", 0x7, 0x55, 0x0E },
        { Hm, "w1:8 c1 w2:8 c2 w3:8 c3", "oA", 0x7, 0x55, 0x0E },
        { Hm, "o1 w2:8 c2 w3:8 c3", "oA", 0x7, 0x55, 0x0E },
    };

    [Theory]
    [MemberData(nameof(Errors))]
    public async Task Error_has_its_exact_sense(string options, string setup, string failing, byte key, byte asc, byte ascq)
    {
        await using var h = await ZbcKit.HarnessAsync($"{options}@{dir.File("z.zbc")}", 8 << 20);
        var before = setup.Length > 0 ? await ZoneScript.RunAsync(h, setup, ZoneBlocks) : null;
        if (before is not null)
            ZbcKit.AssertGood(before, setup);
        var zonesBefore = await ZbcKit.ReportAllAsync(h);
        ZbcKit.AssertSense(await ZoneScript.RunAsync(h, failing, ZoneBlocks), (SenseKey)key, asc, ascq, failing);
        Assert.Equal(zonesBefore, await ZbcKit.ReportAllAsync(h)); // a refused command changes nothing
    }

    [Theory]
    [InlineData(Hm, "w1:8", "rd1@0:16")]          // unrestricted reads: past the pointer reads zeros
    [InlineData(Hm, "we1 we2", "rd1@2040:16")]    // ... and may cross zones
    [InlineData(Hm, "", "rd0@2040:16")]
    [InlineData(HmRestricted, "w1:8", "rd1@0:8")] // restricted, but below the pointer
    [InlineData(HmRestricted, "we1", "rd1@0:2048")]
    [InlineData(HmRestricted, "", "rd0@0:2048")]  // conventional zones are never restricted
    [InlineData(Hm, "o1", "w2:8")]                // one explicit open leaves room for an implicit one
    [InlineData(Hm, "o1 w2:8 c2", "oA")]          // 1 explicit + 1 closed fits in 2
    public async Task Allowed_access_succeeds(string options, string setup, string command)
    {
        await using var h = await ZbcKit.HarnessAsync($"{options}@{dir.File("z.zbc")}", 8 << 20);
        if (setup.Length > 0)
            ZbcKit.AssertGood(await ZoneScript.RunAsync(h, setup, ZoneBlocks), setup);
        ZbcKit.AssertGood(await ZoneScript.RunAsync(h, command, ZoneBlocks), command);
    }

    public static TheoryData<string, byte[], byte, byte, byte> CdbErrors => new()
    {
        { "REPORT ZONES at the capacity", ZbcKit.ReportZones(Capacity, 4096), 0x5, 0x21, 0x00 },
        { "REPORT ZONES far past the end", ZbcKit.ReportZones(long.MaxValue, 4096), 0x5, 0x21, 0x00 },
        { "REPORT ZONES, reserved reporting option 08h", ZbcKit.ReportZones(0, 4096, (ZoneReportingOptions)0x08), 0x5, 0x24, 0x00 },
        { "REPORT ZONES, reserved reporting option 12h", ZbcKit.ReportZones(0, 4096, (ZoneReportingOptions)0x12), 0x5, 0x24, 0x00 },
        { "REPORT ZONES, reserved reporting option 3Eh", ZbcKit.ReportZones(0, 4096, (ZoneReportingOptions)0x3E), 0x5, 0x24, 0x00 },
        { "REPORT ZONES, reserved bit 6 of byte 14", SetBits(ZbcKit.ReportZones(0, 4096), 14, 0x40), 0x5, 0x24, 0x00 },
        { "ZBC IN, unsupported service action 06h", ZbcKit.ReportZones(0, 4096).With(0x06, 1), 0x5, 0x24, 0x00 },
        { "OPEN ZONE, zone id inside a zone", ZbcKit.ZoneOut(ZoneAction.Open, ZoneBlocks + 1), 0x5, 0x24, 0x00 },
        { "RESET WRITE POINTER, zone id inside a zone", ZbcKit.ZoneOut(ZoneAction.ResetWritePointer, 2 * ZoneBlocks - 1), 0x5, 0x24, 0x00 },
        { "CLOSE ZONE, a conventional zone", ZbcKit.ZoneOut(ZoneAction.Close, 0), 0x5, 0x24, 0x00 },
        { "FINISH ZONE, a conventional zone", ZbcKit.ZoneOut(ZoneAction.Finish, 0), 0x5, 0x24, 0x00 },
        { "RESET WRITE POINTER, a conventional zone", ZbcKit.ZoneOut(ZoneAction.ResetWritePointer, 0), 0x5, 0x24, 0x00 },
        { "OPEN ZONE at the capacity", ZbcKit.ZoneOut(ZoneAction.Open, Capacity), 0x5, 0x21, 0x00 },
        { "FINISH ZONE far past the end", ZbcKit.ZoneOut(ZoneAction.Finish, long.MaxValue), 0x5, 0x21, 0x00 },
        { "ZBC OUT, unsupported service action 05h", ZbcKit.ZoneOut(ZoneAction.Open, ZoneBlocks).With(0x05, 1), 0x5, 0x24, 0x00 },
        { "ZBC OUT, reserved byte 12", SetBits(ZbcKit.ZoneOut(ZoneAction.Open, ZoneBlocks), 12, 0x01), 0x5, 0x24, 0x00 },
        { "ZBC OUT, reserved bit 1 of byte 14", SetBits(ZbcKit.ZoneOut(ZoneAction.Open, ZoneBlocks), 14, 0x02), 0x5, 0x24, 0x00 },
        { "WRITE(16) past the capacity", ZbcKit.Write16(Capacity - 4, 8), 0x5, 0x21, 0x00 },
        { "READ(16) past the capacity", ZbcKit.Read16(Capacity, 1), 0x5, 0x21, 0x00 },
    };

    [Theory]
    [MemberData(nameof(CdbErrors))]
    public async Task Cdb_error_has_its_exact_sense(string what, byte[] cdb, byte key, byte asc, byte ascq)
    {
        await using var h = await ZbcKit.HarnessAsync($"{Hm}@{dir.File("z.zbc")}", 8 << 20);
        var data = cdb[0] == 0x8A ? new byte[8 * 512] : null;
        ZbcKit.AssertSense(await h.RunAsync(cdb, data), (SenseKey)key, asc, ascq, what);
    }

    [Fact]
    public async Task Field_errors_point_at_the_reporting_option_and_the_zone_id()
    {
        await using var h = await ZbcKit.HarnessAsync($"{Hm}@{dir.File("z.zbc")}", 8 << 20);
        var r = await h.RunAsync(ZbcKit.ReportZones(0, 4096, (ZoneReportingOptions)0x08));
        Assert.Equal((byte)0xCD, r.SenseBytes[15]); // SKSV, C/D, BPV, bit 5
        Assert.Equal(14, BinaryPrimitives.ReadUInt16BigEndian(r.SenseBytes.AsSpan(16)));
        r = await h.RunAsync(ZbcKit.ZoneOut(ZoneAction.Open, ZoneBlocks + 1));
        Assert.Equal(2, BinaryPrimitives.ReadUInt16BigEndian(r.SenseBytes.AsSpan(16))); // the ZONE ID field
    }

    [Fact]
    public async Task Read_only_zone_refuses_writes_and_zone_commands_but_reads()
    {
        var path = dir.File("z.zbc");
        await using (var h = await ZbcKit.HarnessAsync($"{Hm}@{path}", 8 << 20))
        {
            ZbcKit.AssertGood(await ZoneScript.RunAsync(h, "w2:8", ZoneBlocks));
            await ((HandlerRuntime.Handlers.Zbc.ZbcDevice)h.Device).SetZoneConditionAsync(2 * ZoneBlocks, ZoneCondition.ReadOnly, default);
            await AssertReadOnlyZoneAsync(h);
        }
        // the condition is durable: a reopened device still has the zone read-only
        await using (var h = await ZbcKit.HarnessAsync($"{Hm}@{path}"))
            await AssertReadOnlyZoneAsync(h);
    }

    private static async Task AssertReadOnlyZoneAsync(ScsiHarness h)
    {
        ZbcKit.AssertSense(await ZoneScript.RunAsync(h, "w2@8:1", ZoneBlocks), SenseKey.DataProtect, 0x27, 0x08, "write");
        foreach (var op in new[] { "o2", "c2", "f2", "r2" })
            ZbcKit.AssertSense(await ZoneScript.RunAsync(h, op, ZoneBlocks), SenseKey.DataProtect, 0x27, 0x08, op);
        var read = await h.RunAsync(ZbcKit.Read16(2 * ZoneBlocks, 8));
        ZbcKit.AssertGood(read, "read of a read-only zone");
        Assert.True(ZbcKit.WriteIdOf(read.DataIn.AsSpan(0, 512), 2 * ZoneBlocks) > 0);
        foreach (var op in new[] { "oA", "cA", "fA", "rA" })
            ZbcKit.AssertGood(await ZoneScript.RunAsync(h, op, ZoneBlocks), op); // ALL skips the zone
        var zones = await ZbcKit.ReportAllAsync(h);
        Assert.Equal(ZoneCondition.ReadOnly, zones[2].Condition);
        var listed = ZbcKit.ParseReport((await h.RunAsync(ZbcKit.ReportZones(0, 4096, ZoneReportingOptions.ReadOnly))).DataIn);
        Assert.Equal(new[] { 2 * ZoneBlocks }, listed.Zones.Select(z => z.Start));
    }

    [Fact]
    public async Task Offline_zone_refuses_reads_writes_and_zone_commands()
    {
        var path = dir.File("z.zbc");
        await using (var h = await ZbcKit.HarnessAsync($"{Hm}@{path}", 8 << 20))
        {
            await ((HandlerRuntime.Handlers.Zbc.ZbcDevice)h.Device).SetZoneConditionAsync(3 * ZoneBlocks, ZoneCondition.Offline, default);
            await AssertOfflineZoneAsync(h);
        }
        await using (var h = await ZbcKit.HarnessAsync($"{Hm}@{path}"))
            await AssertOfflineZoneAsync(h);
    }

    private static async Task AssertOfflineZoneAsync(ScsiHarness h)
    {
        ZbcKit.AssertSense(await ZoneScript.RunAsync(h, "w3@0:1", ZoneBlocks), SenseKey.DataProtect, 0x2C, 0x0E, "write");
        ZbcKit.AssertSense(await ZoneScript.RunAsync(h, "rd3@0:1", ZoneBlocks), SenseKey.DataProtect, 0x2C, 0x0E, "read");
        ZbcKit.AssertSense(await ZoneScript.RunAsync(h, "we2 rd2@2040:16", ZoneBlocks), SenseKey.DataProtect, 0x2C, 0x0E, "read into it");
        foreach (var op in new[] { "o3", "c3", "f3", "r3" })
            ZbcKit.AssertSense(await ZoneScript.RunAsync(h, op, ZoneBlocks), SenseKey.DataProtect, 0x2C, 0x0E, op);
        ZbcKit.AssertGood(await ZoneScript.RunAsync(h, "rA", ZoneBlocks));
        var listed = ZbcKit.ParseReport((await h.RunAsync(ZbcKit.ReportZones(0, 4096, ZoneReportingOptions.Offline))).DataIn);
        Assert.Equal(new[] { 3 * ZoneBlocks }, listed.Zones.Select(z => z.Start));
    }

    [Fact]
    public async Task Zbc_commands_are_unknown_opcodes_on_an_ordinary_lun()
    {
        await using var h = new ScsiHarness(new MemoryDevice(4096));
        await h.ClearUnitAttentionAsync();
        ZbcKit.AssertSense(await h.RunAsync(ZbcKit.ReportZones(0, 4096)), SenseKey.IllegalRequest, 0x20, 0x00);
        ZbcKit.AssertSense(await h.RunAsync(ZbcKit.ZoneOut(ZoneAction.ResetWritePointer, 0, all: true)), SenseKey.IllegalRequest, 0x20, 0x00);
        ZbcKit.AssertSense(await h.RunAsync(ZbcKit.ReportZones(0, 4096).With(0x06, 1)), SenseKey.IllegalRequest, 0x20, 0x00);
        ZbcKit.AssertSense(await h.RunAsync(ZbcKit.Inquiry(0xB6)), SenseKey.IllegalRequest, 0x24, 0x00);
        var pages = (await h.RunAsync(ZbcKit.Inquiry(0x00))).DataIn;
        Assert.DoesNotContain((byte)0xB6, pages.AsSpan(4).ToArray());
        Assert.Equal(0, (await h.RunAsync(ZbcKit.Inquiry())).DataIn[0] & 0x1F);
        Assert.Equal(0, (await h.RunAsync(ZbcKit.ReadCapacity16)).DataIn[12] & 0x30);
    }

    [Fact]
    public async Task A_read_only_lun_reports_zones_but_refuses_zone_commands_and_writes()
    {
        var path = dir.File("z.zbc");
        await (await ZbcKit.OpenAsync($"{Hm}@{path}", 8 << 20)).DisposeAsync();
        await using var h = new ScsiHarness(await ZbcKit.OpenAsync($"@{path}", readOnly: true), readOnly: true);
        await h.ClearUnitAttentionAsync();
        ZbcKit.AssertGood(await h.RunAsync(ZbcKit.ReportZones(0, 4096)));
        ZbcKit.AssertSense(await h.RunAsync(ZbcKit.ZoneOut(ZoneAction.ResetWritePointer, 0, all: true)), SenseKey.DataProtect, 0x27, 0x00);
        ZbcKit.AssertSense(await h.RunAsync(ZbcKit.Write16(ZoneBlocks, 1), new byte[512]), SenseKey.DataProtect, 0x27, 0x00);
    }

    // Reserved bits set on top of what the CDB holds (a service action is replaced instead, with Cdbs.With).
    private static byte[] SetBits(byte[] cdb, int index, byte value)
    {
        cdb[index] |= value;
        return cdb;
    }
}
