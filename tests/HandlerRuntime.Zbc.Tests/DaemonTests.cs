using System.Text.Json.Nodes;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>The zbc handler as a plugin of a real `hrt serve`, driven by the CLI as a user would.</summary>
public sealed class DaemonTests : IDisposable
{
    private const long ZoneBlocks = 2048;
    private readonly TempDir dir = new("zbc-daemon");

    public void Dispose() => dir.Dispose();

    [Fact]
    public async Task The_daemon_serves_zbc_luns_and_keeps_zone_state_across_a_restart()
    {
        // a device with history: zone 1 CLOSED at 100, zone 2 FULL, zone 3 finished after 7 blocks
        var path = dir.File("z.zbc");
        byte[] zone1;
        await using (var h = await ZbcKit.HarnessAsync($"model-HM/zsize-1/conv-1/open-4@{path}", 16 * ZoneBlocks * 512))
        {
            ZbcKit.AssertGood(await ZoneScript.RunAsync(h, "w1:100 c1 we2 w3:7 f3", ZoneBlocks));
            zone1 = (await h.RunAsync(ZbcKit.Read16(ZoneBlocks, 100))).DataIn;
        }
        var expected = new JsonObject { ["NotWritePointer"] = 1, ["Closed"] = 1, ["Full"] = 2, ["Empty"] = 12 };

        JsonNode lunDefinitions;
        await using (var daemon = await HrtDaemon.StartAsync())
        {
            var handlers = await daemon.CliOkAsync("handlers", "--json");
            Assert.Contains("\"zbc\"", handlers);
            Assert.Contains("zsize-", handlers); // the config help

            // options that agree with the file open it as it is
            await daemon.CliOkAsync("lun", "create", "z", $"zbc/model-HM/zsize-1@{path}");
            await AssertConditionsAsync(daemon, "z", expected);
            var list = JsonNode.Parse(await daemon.CliOkAsync("lun", "list", "--json"))!.AsArray();
            Assert.Equal(16L * ZoneBlocks * 512, list.Single(l => l!["name"]!.GetValue<string>() == "z")!["size"]!.GetValue<long>());

            // a device the daemon creates
            var fresh = dir.File("fresh.zbc");
            await daemon.CliOkAsync("lun", "create", "fresh", $"zbc/model-HA/zsize-1/conv-0@{fresh}", "--size", "8M");
            await AssertConditionsAsync(daemon, "fresh", new JsonObject { ["Empty"] = 8 });

            // options that contradict a file: refused with a sentence naming the difference, file untouched
            await daemon.CliOkAsync("lun", "delete", "fresh");
            var before = await File.ReadAllBytesAsync(fresh);
            var refused = await daemon.CliAsync("lun", "create", "bad", $"zbc/model-HM/zsize-2@{fresh}");
            Assert.NotEqual(0, refused.ExitCode);
            Assert.Contains("holds a zbc device with model-HA, zsize-1, but the cfgstring or LUN settings ask for model-HM, zsize-2", refused.StdErr);
            var after = await File.ReadAllBytesAsync(fresh);
            Assert.True(before.AsSpan().SequenceEqual(after), "the refused open modified the file");

            // a second LUN on a file already served is refused too
            var twice = await daemon.CliAsync("lun", "create", "twice", $"zbc//{path.TrimStart('/')}");
            Assert.NotEqual(0, twice.ExitCode);
            Assert.Contains("in use", twice.StdErr);

            lunDefinitions = JsonNode.Parse(await File.ReadAllTextAsync(daemon.ConfigPath))!["luns"]!.DeepClone();
        }

        // a new daemon from the persisted LUN definitions reopens the device with its zones as they were
        await using (var daemon = await HrtDaemon.StartAsync(config => config["luns"] = lunDefinitions.DeepClone()))
        {
            await AssertConditionsAsync(daemon, "z", expected);
        }

        await using (var h = await ZbcKit.HarnessAsync($"@{path}"))
        {
            var zones = await ZbcKit.ReportAllAsync(h);
            Assert.Equal((ZoneCondition.Closed, ZoneBlocks + 100), (zones[1].Condition, zones[1].WritePointer));
            Assert.Equal(ZoneCondition.Full, zones[2].Condition);
            Assert.Equal(ZoneCondition.Full, zones[3].Condition);
            var now = (await h.RunAsync(ZbcKit.Read16(ZoneBlocks, 100))).DataIn;
            Assert.True(zone1.AsSpan().SequenceEqual(now), "zone 1's data changed");
        }
    }

    private static async Task AssertConditionsAsync(HrtDaemon daemon, string lun, JsonObject expected)
    {
        var status = JsonNode.Parse(await daemon.CliOkAsync("status", "--json"))!;
        var handler = status["handlers"]!.AsArray().Single(h => h!["lun"]!.GetValue<string>() == lun)!["status"]!;
        Assert.True(JsonNode.DeepEquals(expected, handler["conditions"]), $"LUN {lun}: zone conditions {handler["conditions"]}, expected {expected}");
    }
}
