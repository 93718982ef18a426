using System.Text.Json.Nodes;
using HandlerRuntime.Tests.Plugins;

namespace HandlerRuntime.Tests.Daemon;

/// <summary>`hrt` end to end: a real daemon on a temporary socket, the CLI as a separate process.</summary>
public sealed class CliTests
{
    [Fact]
    public async Task Lun_create_list_resize_delete_with_json_and_persistence_across_restart()
    {
        await using var d = await HrtDaemon.StartAsync(c => c["luns"]!.AsArray().Add(new JsonObject { ["name"] = "a", ["cfgstring"] = "ram/@", ["size"] = "8M" }));
        var img = d.File("b.img");

        var created = JsonNode.Parse(await d.CliOkAsync("lun", "create", "b", "file/" + img, "--size", "32M", "--json"))!;
        Assert.Equal("b", (string?)created["name"]);
        Assert.Equal(32L << 20, (long)created["size"]!);
        Assert.Equal(32L << 20, new FileInfo(img).Length);

        var list = JsonNode.Parse(await d.CliOkAsync("lun", "list", "--json"))!.AsArray();
        var b = list.Single(x => (string?)x!["name"] == "b")!;
        Assert.Equal("file/" + img, (string?)b["cfgstring"]);
        Assert.Equal(512, (int)b["blockSize"]!);
        Assert.Equal(HrtDaemon.DefaultTarget, (string?)b["target"]);
        Assert.Equal(1, (int)b["lun"]!); // lowest free number: "a" has 0
        var wwn = (string?)b["wwn"];

        var resized = JsonNode.Parse(await d.CliOkAsync("lun", "resize", "b", "48M", "--json"))!;
        Assert.Equal(48L << 20, (long)resized["size"]!);
        Assert.Equal(48L << 20, new FileInfo(img).Length);

        // The definition is in the file, so a restart brings it back with the same number, size and WWN.
        var persisted = await File.ReadAllTextAsync(d.ConfigPath);
        Assert.Contains("\"b\"", persisted);
        await d.RestartAsync();
        var again = JsonNode.Parse(await d.CliOkAsync("lun", "list", "--json"))!.AsArray().Single(x => (string?)x!["name"] == "b")!;
        Assert.Equal(1, (int)again["lun"]!);
        Assert.Equal(48L << 20, (long)again["size"]!);
        Assert.Equal(wwn, (string?)again["wwn"]);

        await d.CliOkAsync("lun", "delete", "b");
        Assert.DoesNotContain(JsonNode.Parse(await d.CliOkAsync("lun", "list", "--json"))!.AsArray(), x => (string?)x!["name"] == "b");
        Assert.DoesNotContain("\"b\"", await File.ReadAllTextAsync(d.ConfigPath));
        Assert.True(File.Exists(img)); // deleting a LUN never deletes user data
    }

    [Fact]
    public async Task Luns_created_in_quick_succession_survive_the_reloads_their_persistence_triggers()
    {
        // Each create rewrites the config file, which the daemon reloads; a reload must never
        // apply a list read before a later create was persisted.
        await using var d = await HrtDaemon.StartAsync();
        for (var i = 0; i < 8; i++)
            await d.CliOkAsync("lun", "create", $"q{i}", "ram/@", "--size", "1M");
        await Task.Delay(1500); // past the reload debounce
        var names = JsonNode.Parse(await d.CliOkAsync("lun", "list", "--json"))!.AsArray().Select(l => (string?)l!["name"]).ToList();
        Assert.Equal(Enumerable.Range(0, 8).Select(i => $"q{i}"), names.Order());
        Assert.DoesNotContain("removed LUN", d.Output);
    }

    [Fact]
    public async Task A_lun_created_with_a_target_and_no_number_gets_the_lowest_free_one_there()
    {
        await using var d = await HrtDaemon.StartAsync();
        const string target = "iqn.2026-11.org.handler-runtime:second";
        await d.CliOkAsync("lun", "create", "x0", "ram/@", "--size", "1M", "--target", target);
        await d.CliOkAsync("lun", "create", "x1", "ram/@", "--size", "1M", "--target", target);
        await d.CliOkAsync("lun", "create", "y0", "ram/@", "--size", "1M");
        await d.CliOkAsync("lun", "delete", "x0");
        await d.CliOkAsync("lun", "create", "x2", "ram/@", "--size", "1M", "--target", target);
        var list = JsonNode.Parse(await d.CliOkAsync("lun", "list", "--json"))!.AsArray();
        int Number(string n) => (int)list.Single(x => (string?)x!["name"] == n)!["lun"]!;
        Assert.Equal(0, Number("x2"));
        Assert.Equal(1, Number("x1"));
        Assert.Equal(0, Number("y0"));
        var ls = JsonNode.Parse(await d.CliOkAsync("ls", "--json"))!;
        var names = ls["targets"]!.AsArray().Select(t => (string?)t!["name"]).ToList();
        Assert.Contains(target, names);
        Assert.Contains(HrtDaemon.DefaultTarget, names);
    }

    [Theory]
    [InlineData(new[] { "lun", "create", "bad name", "ram/@", "--size", "1M" }, "is not a valid LUN name")]
    [InlineData(new[] { "lun", "create", "n", "ram@", "--size", "1M" }, "has no '/'")]
    [InlineData(new[] { "lun", "create", "n", "nosuch/x", "--size", "1M" }, "No loaded handler serves subtype 'nosuch'")]
    [InlineData(new[] { "lun", "create", "n", "ram/@" }, "give a size")]
    [InlineData(new[] { "lun", "create", "n", "ram/@", "--size", "12Q" }, "is not a size")]
    [InlineData(new[] { "lun", "create", "n", "ram/@", "--size", "1M", "--block-size", "520" }, "is not one of 512, 1024, 2048, 4096")]
    [InlineData(new[] { "lun", "create", "n", "file/relative.img", "--size", "1M" }, "is not an absolute path")]
    [InlineData(new[] { "lun", "create", "n", "file//nonexistent/dir/x.img" }, "the directory /nonexistent/dir does not exist; create it first")]
    [InlineData(new[] { "lun", "create", "n", "file//tmp/hrt-cli-no-such.img" }, "does not exist; give a size")]
    [InlineData(new[] { "check-config", "file//nonexistent/dir/x.img" }, "the directory /nonexistent/dir does not exist")]
    [InlineData(new[] { "check-config", "file//etc/hostname/x.img" }, "/etc/hostname is a file, not a directory")]
    [InlineData(new[] { "check-config", "file//tmp" }, "/tmp is a directory; give the path of a file")]
    [InlineData(new[] { "check-config", "zbc/model-HM/bogus-3@/tmp/z.raw" }, "'bogus-3' is not a zbc option")]
    [InlineData(new[] { "check-config", "qcow//tmp/x.qcow2?bogus=1" }, "'bogus' is not a qcow option")]
    [InlineData(new[] { "lun", "delete", "ghost" }, "There is no LUN named ghost")]
    [InlineData(new[] { "lun", "resize", "ghost", "1G" }, "There is no LUN named ghost")]
    [InlineData(new[] { "log-level", "loud" }, "is not a log level")]
    public async Task Failures_print_one_sentence_and_exit_non_zero(string[] args, string expected)
    {
        await using var d = await HrtDaemon.StartAsync();
        var r = await d.CliAsync(args);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains(expected, r.StdErr);
        Assert.StartsWith("hrt: ", r.StdErr);
        Assert.Single(r.StdErr.Trim().Split('\n'));
    }

    [Fact]
    public async Task A_duplicate_name_and_a_taken_lun_number_are_refused()
    {
        await using var d = await HrtDaemon.StartAsync();
        await d.CliOkAsync("lun", "create", "one", "ram/@", "--size", "1M", "--lun", "3");
        var dup = await d.CliAsync("lun", "create", "one", "ram/@", "--size", "1M");
        Assert.Contains("already exists", dup.StdErr);
        var taken = await d.CliAsync("lun", "create", "two", "ram/@", "--size", "1M", "--lun", "3");
        Assert.Contains("LUN number 3", taken.StdErr);
        Assert.Contains("already used by LUN one", taken.StdErr);
    }

    [Fact]
    public async Task Check_config_handlers_status_and_ls()
    {
        await using var d = await HrtDaemon.StartAsync();
        var ok = await d.CliAsync("check-config", "ram/@");
        Assert.Equal(0, ok.ExitCode);
        Assert.Contains("valid", ok.StdOut);
        var bad = await d.CliAsync("check-config", "file/relative", "--json");
        Assert.Equal(1, bad.ExitCode);
        var check = JsonNode.Parse(bad.StdOut)!;
        Assert.False((bool)check["valid"]!);
        Assert.Contains("not an absolute path", (string?)check["reason"]);

        var handlers = JsonNode.Parse(await d.CliOkAsync("handlers", "--json"))!.AsArray().Select(h => (string?)h!["subtype"]).ToList();
        Assert.Contains("file", handlers);
        Assert.Contains("ram", handlers);

        var status = JsonNode.Parse(await d.CliOkAsync("status", "--json"))!;
        Assert.Equal(d.ProcessId, (int)status["pid"]!);
        Assert.Equal(d.ConfigPath, (string?)status["configFile"]);
        Assert.Equal(3, (int)status["logLevel"]!);

        var human = await d.CliOkAsync("ls");
        Assert.Contains(HrtDaemon.DefaultTarget, human);
    }

    [Fact]
    public async Task Log_level_change_is_visible_in_the_output()
    {
        await using var d = await HrtDaemon.StartAsync();
        await d.CliOkAsync("lun", "list");
        await Task.Delay(300);
        Assert.DoesNotContain("control: GET /v1/luns", d.Output);

        Assert.Contains("4 (debug)", await d.CliOkAsync("log-level", "debug"));
        await d.CliOkAsync("lun", "list");
        await d.WaitForOutputAsync(o => o.Contains("control: GET /v1/luns -> 200"), TimeSpan.FromSeconds(5), "a debug line");

        Assert.Contains("2 (warning)", await d.CliOkAsync("log-level", "2"));
        var before = d.Output.Length;
        await d.CliOkAsync("lun", "list");
        await Task.Delay(300);
        Assert.DoesNotContain("control: GET /v1/luns", d.Output[before..]);
    }

    [Fact]
    public async Task The_control_socket_is_private_and_a_second_daemon_on_it_is_refused()
    {
        await using var d = await HrtDaemon.StartAsync();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(d.ControlSocket));
        var second = await ProcessRunner.RunAsync(RepoPaths.Hrt, ["serve", "--config", d.ConfigPath, "--control", d.ControlSocket, "--state-dir", d.File("state2"), "--log-dir", d.File("log2"), "--portal", $"127.0.0.1:{FreePort.Next()}", "--nbd-listen", $"127.0.0.1:{FreePort.Next()}"], TimeSpan.FromSeconds(60));
        Assert.Equal(2, second.ExitCode);
        Assert.Contains("Another hrt daemon is already serving", second.StdErr);
        Assert.Equal(0, (await d.CliAsync("status")).ExitCode);
    }

    [Fact]
    public async Task An_invalid_config_at_startup_is_refused_with_the_reason()
    {
        using var dir = new TempDir();
        var config = dir.File("bad.json");
        await File.WriteAllTextAsync(config, "{ \"luns\": [ { \"name\": \"x\", \"cfgstring\": \"ram/@\", \"size\": \"lots\" } ] }");
        var r = await ProcessRunner.RunAsync(RepoPaths.Hrt, ["serve", "--config", config, "--control", dir.File("s.sock"), "--state-dir", dir.File("state"), "--log-dir", dir.File("log")], TimeSpan.FromSeconds(60));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("luns[0].size: 'lots' is not a size", r.StdErr);
    }

    [Fact]
    public async Task A_handler_dropped_into_the_handler_path_shows_up_in_hrt_handlers_within_5_seconds()
    {
        using var path = new TempDir("hrt-handlers");
        PluginFolders.InstallBundled(path.Path);
        await using var d = await HrtDaemon.StartAsync(handlerPath: path.Path);
        Assert.DoesNotContain("versioned", await d.CliOkAsync("handlers", "--json"));

        PluginFolders.Install(PluginFolders.V1, path.Path);
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!(await d.CliOkAsync("handlers", "--json")).Contains("\"versioned\""))
        {
            Assert.True(DateTime.UtcNow < deadline, "not usable within 5 s:\n" + d.Output);
            await Task.Delay(100);
        }
        await d.CliOkAsync("lun", "create", "v", "versioned/" + d.File("v.img"), "--size", "1M");
        var status = JsonNode.Parse(await d.CliOkAsync("status", "--json"))!;
        Assert.Equal("1.0.0", (string?)status["handlers"]![0]!["status"]!["version"]);
    }
}
