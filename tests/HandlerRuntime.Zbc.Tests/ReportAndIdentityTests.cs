using System.Buffers.Binary;
using HandlerRuntime.Handlers.Zbc;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>REPORT ZONES with every reporting option and PARTIAL, and what a zoned LU says about itself.</summary>
public sealed class ReportAndIdentityTests : IDisposable
{
    private const long ZoneBlocks = 2048;
    private readonly TempDir dir = new("zbc-report");

    public void Dispose() => dir.Dispose();

    /// <summary>
    /// Zones: 0 conventional, 1 EMPTY, 2 IMPLICIT OPEN, 3 EXPLICIT OPEN, 4 CLOSED, 5 FULL,
    /// 6 READ ONLY, 7 OFFLINE, 8 EMPTY, 9 a runt of 1024 blocks, EMPTY (host-aware: 8 NON_SEQ).
    /// </summary>
    private async Task<ScsiHarness> EveryConditionAsync(string model)
    {
        var h = await ZbcKit.HarnessAsync($"model-{model}/zsize-1/conv-1/open-4@{dir.File(model + ".zbc")}", (9 * ZoneBlocks + 1024) * 512);
        ZbcKit.AssertGood(await ZoneScript.RunAsync(h, "w2:8 o3 w4:8 c4 we5", ZoneBlocks));
        var device = (ZbcDevice)h.Device;
        await device.SetZoneConditionAsync(6 * ZoneBlocks, ZoneCondition.ReadOnly, default);
        await device.SetZoneConditionAsync(7 * ZoneBlocks, ZoneCondition.Offline, default);
        if (model == "HA")
            ZbcKit.AssertGood(await ZoneScript.RunAsync(h, "w8@16:8 c8", ZoneBlocks));
        return h;
    }

    [Theory]
    [InlineData("HM", ZoneReportingOptions.All, new[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 })]
    [InlineData("HM", ZoneReportingOptions.Empty, new[] { 1, 8, 9 })]
    [InlineData("HM", ZoneReportingOptions.ImplicitlyOpened, new[] { 2 })]
    [InlineData("HM", ZoneReportingOptions.ExplicitlyOpened, new[] { 3 })]
    [InlineData("HM", ZoneReportingOptions.Closed, new[] { 4 })]
    [InlineData("HM", ZoneReportingOptions.Full, new[] { 5 })]
    [InlineData("HM", ZoneReportingOptions.ReadOnly, new[] { 6 })]
    [InlineData("HM", ZoneReportingOptions.Offline, new[] { 7 })]
    [InlineData("HM", ZoneReportingOptions.ResetRecommended, new int[0])]
    [InlineData("HM", ZoneReportingOptions.NonSequential, new int[0])]
    [InlineData("HM", ZoneReportingOptions.NotWritePointer, new[] { 0 })]
    [InlineData("HA", ZoneReportingOptions.NonSequential, new[] { 8 })]
    [InlineData("HA", ZoneReportingOptions.Closed, new[] { 4, 8 })]
    public async Task Each_reporting_option_lists_exactly_its_zones(string model, ZoneReportingOptions option, int[] expected)
    {
        await using var h = await EveryConditionAsync(model);
        foreach (var partial in new[] { false, true })
        {
            var r = await h.RunAsync(ZbcKit.ReportZones(0, 64 * 64, option, partial));
            ZbcKit.AssertGood(r);
            var report = ZbcKit.ParseReport(r.DataIn);
            Assert.Equal(expected.Select(i => i * ZoneBlocks), report.Zones.Select(z => z.Start));
            Assert.Equal((uint)(expected.Length * 64), report.ListLength);
            Assert.Equal((ulong)(9 * ZoneBlocks + 1024 - 1), report.MaxLba);
            Assert.Equal(64 + expected.Length * 64, r.DataIn.Length);
        }
    }

    [Fact]
    public async Task Descriptors_carry_type_condition_length_start_and_write_pointer()
    {
        await using var h = await EveryConditionAsync("HM");
        var zones = await ZbcKit.ReportAllAsync(h);
        Assert.Equal(new ZoneDescriptor(0, ZoneBlocks, ZoneType.Conventional, ZoneCondition.NotWritePointer, -1), zones[0]);
        Assert.Equal(new ZoneDescriptor(ZoneBlocks, ZoneBlocks, ZoneType.SequentialWriteRequired, ZoneCondition.Empty, ZoneBlocks), zones[1]);
        Assert.Equal(new ZoneDescriptor(2 * ZoneBlocks, ZoneBlocks, ZoneType.SequentialWriteRequired, ZoneCondition.ImplicitlyOpened, 2 * ZoneBlocks + 8), zones[2]);
        Assert.Equal(new ZoneDescriptor(5 * ZoneBlocks, ZoneBlocks, ZoneType.SequentialWriteRequired, ZoneCondition.Full, 6 * ZoneBlocks), zones[5]);
        Assert.Equal(new ZoneDescriptor(9 * ZoneBlocks, 1024, ZoneType.SequentialWriteRequired, ZoneCondition.Empty, 9 * ZoneBlocks), zones[9]);
    }

    [Fact]
    public async Task Partial_limits_the_zone_list_length_to_what_fits()
    {
        await using var h = await EveryConditionAsync("HM");
        var whole = ZbcKit.ParseReport((await h.RunAsync(ZbcKit.ReportZones(0, 64 + 2 * 64))).DataIn);
        Assert.Equal(10u * 64, whole.ListLength);   // all matching zones from the start LBA
        Assert.Equal(2, whole.Zones.Length);         // though only two fit
        var partial = ZbcKit.ParseReport((await h.RunAsync(ZbcKit.ReportZones(0, 64 + 2 * 64, partial: true))).DataIn);
        Assert.Equal(2u * 64, partial.ListLength);
        Assert.Equal(new[] { 0L, ZoneBlocks }, partial.Zones.Select(z => z.Start));

        // from an LBA inside zone 3: zones 3 onwards
        var from = ZbcKit.ParseReport((await h.RunAsync(ZbcKit.ReportZones(3 * ZoneBlocks + 100, 64 * 64))).DataIn);
        Assert.Equal(7u * 64, from.ListLength);
        Assert.Equal(3 * ZoneBlocks, from.Zones[0].Start);

        // a truncated descriptor is transferred without PARTIAL, not with it
        Assert.Equal(100, (await h.RunAsync(ZbcKit.ReportZones(0, 100))).DataIn.Length);
        var cut = await h.RunAsync(ZbcKit.ReportZones(0, 100, partial: true));
        Assert.Equal(64, cut.DataIn.Length);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(cut.DataIn));

        // shorter than the header: the header, truncated, and no error; zero: nothing
        var tiny = await h.RunAsync(ZbcKit.ReportZones(0, 16));
        ZbcKit.AssertGood(tiny);
        Assert.Equal(16, tiny.DataIn.Length);
        Assert.Equal(10u * 64, BinaryPrimitives.ReadUInt32BigEndian(tiny.DataIn));
        var none = await h.RunAsync(ZbcKit.ReportZones(0, 0));
        ZbcKit.AssertGood(none);
        Assert.Empty(none.DataIn);
    }

    [Theory]
    [InlineData(0, 0)]                    // conventional + sequential, runt last zone: may differ
    [InlineData(ZoneBlocks, 2)]           // sequential only, runt last: same but the last shorter
    [InlineData(9 * ZoneBlocks, 1)]       // one zone
    public async Task Same_field_describes_the_listed_zones(long start, byte same)
    {
        await using var h = await ZbcKit.HarnessAsync($"zsize-1/conv-1@{dir.File("same.zbc")}", (9 * ZoneBlocks + 1024) * 512);
        Assert.Equal(same, ZbcKit.ParseReport((await h.RunAsync(ZbcKit.ReportZones(start, 64 * 64))).DataIn).Same);
    }

    [Fact]
    public async Task Same_field_is_3_for_equal_zones_of_two_types()
    {
        await using var h = await ZbcKit.HarnessAsync($"zsize-1/conv-2@{dir.File("same3.zbc")}", 8 * ZoneBlocks * 512);
        Assert.Equal(3, ZbcKit.ParseReport((await h.RunAsync(ZbcKit.ReportZones(0, 64 * 64))).DataIn).Same);
    }

    [Fact]
    public async Task Host_managed_lu_identifies_as_zoned_device_type_14h()
    {
        await using var h = await ZbcKit.HarnessAsync($"model-HM/zsize-1/conv-1/open-3@{dir.File("hm.zbc")}", 16 * ZoneBlocks * 512);
        var std = await h.RunAsync(ZbcKit.Inquiry());
        Assert.Equal(0x14, std.DataIn[0]);

        var pages = (await h.RunAsync(ZbcKit.Inquiry(0x00))).DataIn;
        Assert.Equal(0x14, pages[0]);
        var list = pages.AsSpan(4, BinaryPrimitives.ReadUInt16BigEndian(pages.AsSpan(2))).ToArray();
        Assert.Contains((byte)0xB6, list);
        Assert.Equal(list.Order().ToArray(), list); // ascending, as SPC requires

        var b1 = (await h.RunAsync(ZbcKit.Inquiry(0xB1))).DataIn;
        Assert.Equal(0, b1[8] & 0x30);              // ZONED 00b: the device type says it

        var b6 = (await h.RunAsync(ZbcKit.Inquiry(0xB6))).DataIn;
        Assert.Equal(0x14, b6[0]);
        Assert.Equal(0xB6, b6[1]);
        Assert.Equal(0x3C, BinaryPrimitives.ReadUInt16BigEndian(b6.AsSpan(2)));
        Assert.Equal(1, b6[4] & 1);                 // URSWRZ
        Assert.Equal(0xFFFFFFFFu, BinaryPrimitives.ReadUInt32BigEndian(b6.AsSpan(8)));
        Assert.Equal(0xFFFFFFFFu, BinaryPrimitives.ReadUInt32BigEndian(b6.AsSpan(12)));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(b6.AsSpan(16)));

        var cap = (await h.RunAsync(ZbcKit.ReadCapacity16)).DataIn;
        Assert.Equal((ulong)(16 * ZoneBlocks - 1), BinaryPrimitives.ReadUInt64BigEndian(cap));
        Assert.Equal(512u, BinaryPrimitives.ReadUInt32BigEndian(cap.AsSpan(8)));
        Assert.Equal(0x10, cap[12] & 0x30);         // RC BASIS 01b
    }

    [Fact]
    public async Task Host_aware_lu_is_a_direct_access_device_with_the_zoned_field()
    {
        await using var h = await ZbcKit.HarnessAsync($"model-HA/zsize-1/conv-1/open-3@{dir.File("ha.zbc")}", 16 * ZoneBlocks * 512);
        Assert.Equal(0x00, (await h.RunAsync(ZbcKit.Inquiry())).DataIn[0]);
        Assert.Equal(0x10, (await h.RunAsync(ZbcKit.Inquiry(0xB1))).DataIn[8] & 0x30); // ZONED 01b
        var b6 = (await h.RunAsync(ZbcKit.Inquiry(0xB6))).DataIn;
        Assert.Equal(1, b6[4] & 1);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(b6.AsSpan(8)));   // optimal open
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(b6.AsSpan(12)));  // optimal non-sequential
        Assert.Equal(0xFFFFFFFFu, BinaryPrimitives.ReadUInt32BigEndian(b6.AsSpan(16)));
        Assert.Equal(0x10, (await h.RunAsync(ZbcKit.ReadCapacity16)).DataIn[12] & 0x30);
        var zones = await ZbcKit.ReportAllAsync(h);
        Assert.All(zones.Skip(1), z => Assert.Equal(ZoneType.SequentialWritePreferred, z.Type));
    }

    [Fact]
    public async Task Restricted_reads_show_in_vpd_b6()
    {
        await using var h = await ZbcKit.HarnessAsync($"zsize-1/urswrz-0@{dir.File("r0.zbc")}", 8 * ZoneBlocks * 512);
        Assert.Equal(0, (await h.RunAsync(ZbcKit.Inquiry(0xB6))).DataIn[4] & 1);
    }

    /// <summary>
    /// The checks Linux's sd_zbc makes before it accepts a host-managed disk (zbc.md, "What
    /// Linux requires"), made the way it makes them, on the default layout with a 4096-byte LBA.
    /// </summary>
    [Theory]
    [InlineData("zsize-1", 512, 40L << 20)]
    [InlineData("lba-4096/zsize-4/conv-3", 4096, (30L << 20) + (2 << 20))]
    public async Task Linux_sd_zbc_would_accept_the_device(string options, int lba, long size)
    {
        await using var h = await ZbcKit.HarnessAsync($"{options}@{dir.File("linux.zbc")}", size);
        Assert.Equal(0x14, (await h.RunAsync(ZbcKit.Inquiry())).DataIn[0] & 0x1F);
        var b6 = await h.RunAsync(ZbcKit.Inquiry(0xB6, 64));
        ZbcKit.AssertGood(b6, "VPD B6h must be readable");
        Assert.Equal(1, b6.DataIn[4] & 1);   // URSWRZ: constrained-read devices are refused

        var cap = (await h.RunAsync(ZbcKit.ReadCapacity16)).DataIn;
        var capacity = (long)BinaryPrimitives.ReadUInt64BigEndian(cap) + 1;
        Assert.Equal(lba, (int)BinaryPrimitives.ReadUInt32BigEndian(cap.AsSpan(8)));

        // walk the zones the way sd_zbc does: REPORT ZONES with PARTIAL, from the next LBA
        var zones = new List<ZoneDescriptor>();
        for (long next = 0; next < capacity;)
        {
            var r = await h.RunAsync(ZbcKit.ReportZones(next, 64 + 3 * 64, partial: true));
            ZbcKit.AssertGood(r);
            var report = ZbcKit.ParseReport(r.DataIn);
            Assert.Equal((ulong)capacity - 1, report.MaxLba);
            Assert.NotEmpty(report.Zones);
            zones.AddRange(report.Zones);
            next = report.Zones[^1].Start + report.Zones[^1].Length;
        }
        var zoneBlocks = zones[0].Length;
        Assert.True(System.Numerics.BitOperations.IsPow2(zoneBlocks), "zone size must be a power of two");
        long expectedStart = 0;
        for (var i = 0; i < zones.Count; i++)
        {
            Assert.Equal(expectedStart, zones[i].Start); // contiguous, no gaps
            Assert.True(zones[i].Length == zoneBlocks || (i == zones.Count - 1 && zones[i].Length < zoneBlocks), "all zones the same size but a smaller last one");
            Assert.Contains(zones[i].Type, new[] { ZoneType.Conventional, ZoneType.SequentialWriteRequired });
            expectedStart += zones[i].Length;
        }
        Assert.Equal(capacity, expectedStart);

        // READ(16), WRITE(16) and SYNCHRONIZE CACHE(16), and a zone reset, as the block layer issues them
        var seq = zones.First(z => z.Type == ZoneType.SequentialWriteRequired);
        ZbcKit.AssertGood(await h.RunAsync(ZbcKit.Write16(seq.Start, 8, fua: true), ZbcKit.Pattern(seq.Start, 8, lba, 1)));
        ZbcKit.AssertGood(await h.RunAsync(ZbcKit.SyncCache16));
        ZbcKit.AssertGood(await h.RunAsync(ZbcKit.Read16(seq.Start, 16)));
        ZbcKit.AssertGood(await h.RunAsync(ZbcKit.ZoneOut(ZoneAction.ResetWritePointer, seq.Start)));
        ZbcKit.AssertGood(await h.RunAsync(ZbcKit.ZoneOut(ZoneAction.ResetWritePointer, 0, all: true)));
        // resetting a conventional zone is INVALID FIELD IN CDB, which sd_zbc expects and silences
        ZbcKit.AssertSense(await h.RunAsync(ZbcKit.ZoneOut(ZoneAction.ResetWritePointer, 0)), SenseKey.IllegalRequest, 0x24, 0x00);
    }
}
