using System.Text.Json.Nodes;

namespace HandlerRuntime.Tests.Daemon;

/// <summary>The config file is watched: edits are applied as a diff, a broken file changes nothing.</summary>
public sealed class ConfigReloadTests
{
    private static async Task EditConfigAsync(HrtDaemon d, Action<JsonObject> edit)
    {
        var json = JsonNode.Parse(await File.ReadAllTextAsync(d.ConfigPath))!.AsObject();
        edit(json);
        await File.WriteAllTextAsync(d.ConfigPath, json.ToJsonString());
    }

    private static async Task<JsonArray> LunsAsync(HrtDaemon d) => JsonNode.Parse(await d.CliOkAsync("lun", "list", "--json"))!.AsArray();

    private static async Task WaitForLunsAsync(HrtDaemon d, Func<JsonArray, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (!condition(await LunsAsync(d)))
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"{what} did not happen within 15 s. Daemon output:\n{d.Output}");
            await Task.Delay(200);
        }
    }

    [Fact]
    public async Task Adding_and_removing_a_lun_in_the_file_is_applied_without_a_restart()
    {
        await using var d = await HrtDaemon.StartAsync();
        Assert.Empty(await LunsAsync(d));

        await EditConfigAsync(d, c => c["luns"]!.AsArray().Add(new JsonObject { ["name"] = "r1", ["cfgstring"] = "ram/@", ["size"] = "16M" }));
        await WaitForLunsAsync(d, l => l.Any(x => (string?)x!["name"] == "r1" && (long)x["size"]! == 16 << 20 && (string?)x["state"] == "serving"), "adding r1");

        await EditConfigAsync(d, c => c["luns"] = new JsonArray());
        await WaitForLunsAsync(d, l => l.Count == 0, "removing r1");
        Assert.Contains("removed LUN r1", d.Output);
    }

    [Fact]
    public async Task A_broken_file_keeps_the_previous_configuration_and_says_why_once()
    {
        await using var d = await HrtDaemon.StartAsync(c => c["luns"]!.AsArray().Add(new JsonObject { ["name"] = "keep", ["cfgstring"] = "ram/@", ["size"] = "8M" }));
        Assert.Single(await LunsAsync(d));

        await File.WriteAllTextAsync(d.ConfigPath, "{ \"luns\": [ { \"name\": \"keep\", ");
        await d.WaitForOutputAsync(o => o.Contains("refused, the previous configuration stays in force"), TimeSpan.FromSeconds(10), "the refusal");
        await Task.Delay(1500); // more change notifications for the same content must not repeat the message
        Assert.Equal(1, CountOf(d.Output, "refused, the previous configuration stays in force"));
        Assert.Single(await LunsAsync(d));

        var reload = await d.CliAsync("config", "reload");
        Assert.Equal(1, reload.ExitCode);
        Assert.Contains("not valid JSON", reload.StdErr);

        // A file that parses but is invalid is refused with the field named.
        await File.WriteAllTextAsync(d.ConfigPath, "{ \"logLevel\": \"loud\", \"luns\": [] }");
        await d.WaitForOutputAsync(o => o.Contains("logLevel: 'loud' is not a log level"), TimeSpan.FromSeconds(10), "the validation error");
        Assert.Single(await LunsAsync(d));
    }

    [Fact]
    public async Task Log_level_in_the_file_changes_the_running_level()
    {
        await using var d = await HrtDaemon.StartAsync();
        await EditConfigAsync(d, c => c["logLevel"] = 4);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (JsonNode.Parse(await d.CliOkAsync("log-level", "--json"))!["level"]!.GetValue<int>() != 4)
        {
            Assert.True(DateTime.UtcNow < deadline, d.Output);
            await Task.Delay(200);
        }
    }

    [Fact]
    public async Task Log_directory_change_in_the_file_reopens_the_log_file_there()
    {
        using var dirs = new TempDir();
        var first = dirs.File("first");
        var second = dirs.File("second");
        await using var d = await HrtDaemon.StartAsync(c => c["logDir"] = first, logDirArgument: false);
        Assert.True(File.Exists(Path.Combine(first, "hrt.log")));

        await EditConfigAsync(d, c => c["logDir"] = second);
        var log2 = Path.Combine(second, "hrt.log");
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!File.Exists(log2))
        {
            Assert.True(DateTime.UtcNow < deadline, d.Output);
            await Task.Delay(100);
        }
        await d.CliOkAsync("log-level", "info"); // logs a line, which must land in the new file
        deadline = DateTime.UtcNow.AddSeconds(10);
        while (!(await ReadSharedAsync(log2)).Contains("Log level set to 3"))
        {
            Assert.True(DateTime.UtcNow < deadline, await ReadSharedAsync(log2));
            await Task.Delay(200);
        }
        Assert.DoesNotContain("Log level set to 3", await ReadSharedAsync(Path.Combine(first, "hrt.log")));
    }

    [Theory]
    [InlineData(true, true, "arg")]
    [InlineData(false, true, "env")]
    [InlineData(false, false, "config")]
    public async Task Log_directory_priority_is_command_line_then_environment_then_config(bool argument, bool environment, string winner)
    {
        using var dirs = new TempDir();
        var env = environment ? new Dictionary<string, string> { ["HRT_LOGDIR"] = dirs.File("env") } : null;
        await using var d = await HrtDaemon.StartAsync(c => c["logDir"] = dirs.File("config"), environment: env, logDirArgument: argument);
        var expected = winner == "arg" ? d.LogFile : Path.Combine(dirs.File(winner), "hrt.log");
        var status = JsonNode.Parse(await d.CliOkAsync("status", "--json"))!;
        Assert.Equal(expected, (string?)status["logFile"]);
        Assert.True(File.Exists(expected));
    }

    private static async Task<string> ReadSharedAsync(string path)
    {
        await using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return await new StreamReader(s).ReadToEndAsync();
    }

    private static int CountOf(string text, string what)
    {
        var n = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + 1, StringComparison.Ordinal))
            n++;
        return n;
    }
}
