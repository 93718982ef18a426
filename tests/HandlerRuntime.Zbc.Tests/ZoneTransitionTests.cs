using HandlerRuntime.Handlers.Zbc;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>
/// Every zone transition of docs/zbc.md through the SCSI core, on real files: a row sets a
/// zone up, applies one command and names the condition and write pointer that must follow.
/// Host-managed device: 8 zones of 2048 blocks, zone 0 conventional, at most 2 open.
/// </summary>
public sealed class ZoneTransitionTests : IDisposable
{
    private const long ZoneBlocks = 2048;
    private const string Hm = "model-HM/zsize-1/conv-1/open-2";
    private readonly TempDir dir = new("zbc-transitions");

    public void Dispose() => dir.Dispose();

    // zone 1 is set up by the first script, acted on by the second; expectation for zone 1 after.
    public static TheoryData<string, string, string> Transitions => new()
    {
        // writes
        { "", "w1:8", "IMP@8" },                      // EMPTY -> IMPLICIT OPEN
        { "w1:8", "w1:8", "IMP@16" },                 // stays IMPLICIT OPEN
        { "w1:8 c1", "w1:8", "IMP@16" },              // CLOSED -> IMPLICIT OPEN
        { "o1", "w1:8", "EXP@8" },                    // EXPLICIT OPEN stays explicit
        { "", "we1", "FULL@end" },                    // EMPTY written to the end -> FULL
        { "w1:8", "we1", "FULL@end" },                // IMPLICIT OPEN reaching the end -> FULL
        { "o1 w1:8", "we1", "FULL@end" },             // EXPLICIT OPEN reaching the end -> FULL
        // OPEN
        { "", "o1", "EXP@0" },                        // EMPTY -> EXPLICIT OPEN
        { "w1:8", "o1", "EXP@8" },                    // IMPLICIT OPEN -> EXPLICIT OPEN
        { "w1:8 c1", "o1", "EXP@8" },                 // CLOSED -> EXPLICIT OPEN
        { "o1", "o1", "EXP@0" },                      // no-op on EXPLICIT OPEN
        { "we1", "o1", "FULL@end" },                  // no-op on FULL
        { "w1:8 c1", "oA", "EXP@8" },                 // OPEN ALL opens CLOSED zones
        { "", "oA", "EMPTY@0" },                      // ... not EMPTY ones
        { "w1:8", "oA", "IMP@8" },                    // ... nor IMPLICIT OPEN ones
        // CLOSE
        { "w1:8", "c1", "CLOSED@8" },                 // IMPLICIT OPEN -> CLOSED
        { "o1 w1:8", "c1", "CLOSED@8" },              // EXPLICIT OPEN -> CLOSED
        { "o1", "c1", "EMPTY@0" },                    // open at the zone start -> EMPTY
        { "", "c1", "EMPTY@0" },                      // no-op on EMPTY
        { "w1:8 c1", "c1", "CLOSED@8" },              // no-op on CLOSED
        { "we1", "c1", "FULL@end" },                  // no-op on FULL
        { "w1:8", "cA", "CLOSED@8" },                 // CLOSE ALL
        { "o1", "cA", "EMPTY@0" },
        // FINISH
        { "", "f1", "FULL@end" },                     // EMPTY -> FULL
        { "w1:8", "f1", "FULL@end" },                 // IMPLICIT OPEN -> FULL
        { "o1", "f1", "FULL@end" },                   // EXPLICIT OPEN -> FULL
        { "w1:8 c1", "f1", "FULL@end" },              // CLOSED -> FULL
        { "we1", "f1", "FULL@end" },                  // no-op on FULL
        { "w1:8", "fA", "FULL@end" },                 // FINISH ALL: open zones
        { "w1:8 c1", "fA", "FULL@end" },              // ... and CLOSED ones
        { "", "fA", "EMPTY@0" },                      // ... but leaves EMPTY zones alone
        { "o1", "fA", "FULL@end" },
        // RESET WRITE POINTER
        { "w1:8", "r1", "EMPTY@0" },                  // IMPLICIT OPEN -> EMPTY
        { "o1 w1:8", "r1", "EMPTY@0" },               // EXPLICIT OPEN -> EMPTY
        { "o1", "r1", "EMPTY@0" },
        { "w1:8 c1", "r1", "EMPTY@0" },               // CLOSED -> EMPTY
        { "we1", "r1", "EMPTY@0" },                   // FULL -> EMPTY
        { "f1", "r1", "EMPTY@0" },
        { "", "r1", "EMPTY@0" },
        { "we1", "rA", "EMPTY@0" },                   // RESET ALL
        { "w1:8 c1", "rA", "EMPTY@0" },
    };

    [Theory]
    [MemberData(nameof(Transitions))]
    public async Task Host_managed_transition(string setup, string command, string expected)
    {
        await using var h = await ZbcKit.HarnessAsync($"{Hm}@{dir.File("hm.zbc")}", 8 << 20);
        if (setup.Length > 0)
            ZbcKit.AssertGood(await ZoneScript.RunAsync(h, setup, ZoneBlocks), setup);
        ZbcKit.AssertGood(await ZoneScript.RunAsync(h, command, ZoneBlocks), command);

        var (condition, offset) = ZoneScript.Expectation(expected, ZoneBlocks);
        var zones = await ZbcKit.ReportAllAsync(h);
        Assert.Equal(condition, zones[1].Condition);
        Assert.Equal(ZoneBlocks + offset!.Value, zones[1].WritePointer);
        Assert.False(zones[1].NonSequential);
        Assert.Equal(ZoneCondition.NotWritePointer, zones[0].Condition);
        await AssertAccountingAsync(h, zones);

        // What lies between the write pointer and the zone end reads as zeros; what lies below it is what was written.
        var read = await h.RunAsync(ZbcKit.Read16(ZoneBlocks, (int)ZoneBlocks));
        ZbcKit.AssertGood(read);
        var written = condition == ZoneCondition.Full && !setup.Contains("we1") && !command.Contains("we1") ? WrittenBlocks(setup) : offset.Value;
        for (var b = 0; b < ZoneBlocks; b++)
        {
            var id = ZbcKit.WriteIdOf(read.DataIn.AsSpan(b * 512, 512), ZoneBlocks + b);
            if (b < written)
                Assert.True(id > 0, $"block {b} of zone 1 should hold written data, found {(id == 0 ? "zeros" : "garbage")}");
            else
                Assert.True(id == 0, $"block {b} of zone 1 is above the written data and should read zeros");
        }
    }

    // Blocks written by a setup that ends in a FINISH (whose pointer then says nothing of the data).
    private static long WrittenBlocks(string setup) => setup.Split(' ').Where(o => o.StartsWith("w1:", StringComparison.Ordinal)).Sum(o => long.Parse(o[3..]));

    [Theory]
    [InlineData("", "w1@0:8", "IMP@8", false)]              // sequential write: no NON_SEQ
    [InlineData("", "w1@100:8", "IMP@108", true)]           // a write ahead of the pointer: NON_SEQ, pointer to its end
    [InlineData("w1:64", "w1@8:8", "IMP@64", true)]         // a rewrite below the pointer: NON_SEQ, pointer stays
    [InlineData("w1@100:8", "r1", "EMPTY@0", false)]        // RESET clears NON_SEQ
    [InlineData("we1", "w1@0:8", "FULL@end", true)]         // a FULL sequential-write-preferred zone still takes writes
    [InlineData("", "w1@2040:16", "FULL@end", true)]        // writes may cross sequential-write-preferred zones
    [InlineData("w1@8:8", "f1", "FULL@end", false)]         // FINISH clears NON_SEQ
    public async Task Host_aware_writes_anywhere_and_tracks_non_sequential_zones(string setup, string command, string expected, bool nonSequential)
    {
        await using var h = await ZbcKit.HarnessAsync($"model-HA/zsize-1/conv-1/open-2@{dir.File("ha.zbc")}", 8 << 20);
        if (setup.Length > 0)
            ZbcKit.AssertGood(await ZoneScript.RunAsync(h, setup, ZoneBlocks), setup);
        ZbcKit.AssertGood(await ZoneScript.RunAsync(h, command, ZoneBlocks), command);
        var (condition, offset) = ZoneScript.Expectation(expected, ZoneBlocks);
        var zones = await ZbcKit.ReportAllAsync(h);
        Assert.Equal(ZoneType.SequentialWritePreferred, zones[1].Type);
        Assert.Equal(condition, zones[1].Condition);
        Assert.Equal(ZoneBlocks + offset!.Value, zones[1].WritePointer);
        Assert.Equal(nonSequential, zones[1].NonSequential);
        await AssertAccountingAsync(h, zones);
    }

    [Fact]
    public async Task Host_aware_reset_zeroes_the_zone_so_a_write_ahead_of_the_pointer_exposes_nothing_old()
    {
        await using var h = await ZbcKit.HarnessAsync($"model-HA/zsize-1/conv-1@{dir.File("ha.zbc")}", 8 << 20);
        ZbcKit.AssertGood(await ZoneScript.RunAsync(h, "w1@0:64 r1 w1@32:8", ZoneBlocks));
        var read = await h.RunAsync(ZbcKit.Read16(ZoneBlocks, 40));
        for (var b = 0; b < 32; b++)
            Assert.Equal(0, ZbcKit.WriteIdOf(read.DataIn.AsSpan(b * 512, 512), ZoneBlocks + b));
        for (var b = 32; b < 40; b++)
            Assert.True(ZbcKit.WriteIdOf(read.DataIn.AsSpan(b * 512, 512), ZoneBlocks + b) > 0);
    }

    [Fact]
    public async Task An_implicit_open_at_the_limit_closes_the_lowest_numbered_implicitly_open_zone()
    {
        await using var h = await ZbcKit.HarnessAsync($"{Hm}@{dir.File("hm.zbc")}", 8 << 20);
        ZbcKit.AssertGood(await ZoneScript.RunAsync(h, "w3:8 w2:8 w4:8", ZoneBlocks));
        var zones = await ZbcKit.ReportAllAsync(h);
        Assert.Equal(ZoneCondition.Closed, zones[2].Condition);          // lowest-numbered, not least recently opened
        Assert.Equal(ZoneCondition.ImplicitlyOpened, zones[3].Condition);
        Assert.Equal(ZoneCondition.ImplicitlyOpened, zones[4].Condition);
        await AssertAccountingAsync(h, zones);

        // an explicit open at the limit also makes room by closing an implicitly open zone
        ZbcKit.AssertGood(await ZoneScript.RunAsync(h, "o5", ZoneBlocks));
        zones = await ZbcKit.ReportAllAsync(h);
        Assert.Equal(ZoneCondition.Closed, zones[3].Condition);
        Assert.Equal(ZoneCondition.ImplicitlyOpened, zones[4].Condition);
        Assert.Equal(ZoneCondition.ExplicitlyOpened, zones[5].Condition);

        // one explicit + one implicit: a write to a new zone evicts the implicit one, never the explicit one
        ZbcKit.AssertGood(await ZoneScript.RunAsync(h, "w6:8", ZoneBlocks));
        zones = await ZbcKit.ReportAllAsync(h);
        Assert.Equal(ZoneCondition.Closed, zones[4].Condition);
        Assert.Equal(ZoneCondition.ExplicitlyOpened, zones[5].Condition);
        Assert.Equal(ZoneCondition.ImplicitlyOpened, zones[6].Condition);
        await AssertAccountingAsync(h, zones);
    }

    [Fact]
    public async Task Open_all_makes_room_among_implicitly_open_zones_when_explicit_and_closed_fit()
    {
        await using var h = await ZbcKit.HarnessAsync($"{Hm}@{dir.File("hm.zbc")}", 8 << 20);
        // zone 1 closed, zones 2 and 3 implicitly open: 0 explicit + 1 closed <= 2
        ZbcKit.AssertGood(await ZoneScript.RunAsync(h, "w1:8 c1 w2:8 w3:8 oA", ZoneBlocks));
        var zones = await ZbcKit.ReportAllAsync(h);
        Assert.Equal(ZoneCondition.ExplicitlyOpened, zones[1].Condition);
        Assert.Equal(ZoneCondition.Closed, zones[2].Condition);
        Assert.Equal(ZoneCondition.ImplicitlyOpened, zones[3].Condition);
        await AssertAccountingAsync(h, zones);
    }

    [Fact]
    public async Task Conventional_zones_take_any_write_and_never_change_condition()
    {
        await using var h = await ZbcKit.HarnessAsync($"{Hm}@{dir.File("hm.zbc")}", 8 << 20);
        ZbcKit.AssertGood(await ZoneScript.RunAsync(h, "w0@100:8 w0@0:8 w0@100:8 rd0@0:200", ZoneBlocks));
        ZbcKit.AssertGood(await h.RunAsync(ZbcKit.ZoneOut(ZoneAction.ResetWritePointer, 0, all: true)));
        var zones = await ZbcKit.ReportAllAsync(h);
        Assert.Equal(ZoneCondition.NotWritePointer, zones[0].Condition);
        Assert.Equal(ZoneType.Conventional, zones[0].Type);
        var read = await h.RunAsync(ZbcKit.Read16(0, 108));
        Assert.True(ZbcKit.WriteIdOf(read.DataIn.AsSpan(100 * 512, 512), 100) > 0, "RESET ALL must leave conventional data alone");
    }

    [Theory]
    [InlineData("READ(10)")]
    [InlineData("READ(12)")]
    [InlineData("READ(16)")]
    public async Task Every_read_and_write_size_follows_the_write_pointer(string size)
    {
        await using var h = await ZbcKit.HarnessAsync($"{Hm}@{dir.File("hm.zbc")}", 8 << 20);
        Func<long, int, byte[]> write = size switch { "READ(10)" => ZbcKit.Write10, "READ(12)" => ZbcKit.Write12, _ => (lba, n) => ZbcKit.Write16(lba, n) };
        Func<long, int, byte[]> read = size switch { "READ(10)" => ZbcKit.Read10, "READ(12)" => ZbcKit.Read12, _ => ZbcKit.Read16 };
        ZbcKit.AssertGood(await h.RunAsync(write(ZoneBlocks, 4), ZbcKit.Pattern(ZoneBlocks, 4, 512, 7)));
        ZbcKit.AssertSense(await h.RunAsync(write(ZoneBlocks + 8, 4), ZbcKit.Pattern(ZoneBlocks + 8, 4, 512, 8)), SenseKey.IllegalRequest, 0x21, 0x04);
        var r = await h.RunAsync(read(ZoneBlocks, 8));
        ZbcKit.AssertGood(r);
        Assert.Equal(7, ZbcKit.WriteIdOf(r.DataIn.AsSpan(3 * 512, 512), ZoneBlocks + 3));
        Assert.Equal(0, ZbcKit.WriteIdOf(r.DataIn.AsSpan(4 * 512, 512), ZoneBlocks + 4));
        ZbcKit.AssertGood(await h.RunAsync(ZbcKit.SyncCache10));
        ZbcKit.AssertGood(await h.RunAsync(ZbcKit.SyncCache16));
    }

    /// <summary>The device's open-zone counts match the conditions REPORT ZONES shows.</summary>
    internal static Task AssertAccountingAsync(ScsiHarness h, ZoneDescriptor[] zones)
    {
        var status = ((ZbcDevice)h.Device).GetStatus();
        Assert.Equal(zones.Count(z => z.Condition == ZoneCondition.ImplicitlyOpened), status["implicitlyOpen"]!.GetValue<int>());
        Assert.Equal(zones.Count(z => z.Condition == ZoneCondition.ExplicitlyOpened), status["explicitlyOpen"]!.GetValue<int>());
        Assert.True(status["implicitlyOpen"]!.GetValue<int>() + status["explicitlyOpen"]!.GetValue<int>() <= status["openLimit"]!.GetValue<int>()
                    || ((ZbcDevice)h.Device).ZonedCharacteristics.Model == ZoneModel.HostAware, "more zones open than the limit");
        return Task.CompletedTask;
    }
}
