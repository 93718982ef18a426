using System.Text.Json.Nodes;

namespace HandlerRuntime.Nbd.Tests;

/// <summary>
/// What a client learns in negotiation: exports named after LUNs, their size, transmission
/// flags and block sizes from the LU, LIST, the default export, ACLs, hot reload, and the
/// connection in `hrt ls` / `hrt status`. Flags are compared with nbdkit's file plugin on the
/// same file.
/// </summary>
public sealed class NegotiationTests
{
    [Fact]
    public async Task Nbdinfo_shows_each_LUN_as_an_export_with_its_size_flags_and_block_sizes_like_nbdkit_on_the_same_file()
    {
        using var dir = new TempDir("hrt-nbd");
        var image = dir.File("disk.img");
        NbdKit.SparseFile(image, 64 << 20, (0, 1));
        await using var d = await NbdKit.StartAsync([new("disk0", "file/" + image), new("mem", "ram/@", "32M"), new("ro", "ram/@", "16M", ReadOnly: true)]);

        var disk = await NbdKit.InfoAsync(d.NbdUrl("disk0"));
        Assert.Equal(64L << 20, (long)disk["export-size"]!);
        await using var nbdkit = await PeerServer.NbdkitAsync(image);
        var peer = await NbdKit.InfoAsync(nbdkit.Url);
        // Every capability both servers derive from a file (rotational is nbdkit's guess about the
        // host's disk, fast zero a choice: nbdkit 1.32's file plugin does not offer it).
        foreach (var flag in new[] { "is_read_only", "can_cache", "can_df", "can_flush", "can_fua", "can_multi_conn", "can_trim", "can_zero" })
            Assert.True((bool)disk[flag]! == (bool)peer[flag]!, $"{flag}: hrt {disk[flag]}, nbdkit {peer[flag]}");
        Assert.True((bool)disk["can_fast_zero"]!); // the file handler zeroes with fallocate: fast
        Assert.Equal(new JsonArray("base:allocation").ToJsonString(), disk["contexts"]!.ToJsonString());
        Assert.Equal(512, (int)disk["block_size_minimum"]!);
        Assert.Equal(4096, (int)disk["block_size_preferred"]!);
        Assert.Equal(32 << 20, (int)disk["block_size_maximum"]!);

        var mem = await NbdKit.InfoAsync(d.NbdUrl("mem"));
        Assert.Equal(32L << 20, (long)mem["export-size"]!);
        Assert.False((bool)mem["can_flush"]!); // ram/@ has no cache to flush: no FLUSH, no FUA (as nbdkit's memory plugin)
        Assert.False((bool)mem["can_fua"]!);
        Assert.True((bool)mem["can_trim"]!);

        var ro = await NbdKit.InfoAsync(d.NbdUrl("ro"));
        Assert.True((bool)ro["is_read_only"]!);
        Assert.False((bool)ro["can_trim"]!);
        Assert.False((bool)ro["can_zero"]!);

        // LIST: every LUN, in name order, with a description; INFO per export.
        var list = await NbdKit.RunOkAsync("nbdinfo", ["--list", "--json", d.NbdUrl()]);
        var names = JsonNode.Parse(list.StdOut)!["exports"]!.AsArray().Select(e => (string)e!["export-name"]!).ToList();
        Assert.Equal(["disk0", "mem", "ro"], names);
        Assert.Contains("HRT FILE DISK", list.StdOut);
    }

    [Fact]
    public async Task Nbdsh_sees_every_negotiated_capability_of_a_file_LUN_as_of_nbdkit_on_the_same_file_and_its_own_block_sizes()
    {
        using var dir = new TempDir("hrt-nbd");
        var image = dir.File("caps.img");
        NbdKit.SparseFile(image, 32 << 20, (0, 1));
        await using var d = await NbdKit.StartAsync([new("caps", "file/" + image)]);
        await using var nbdkit = await PeerServer.NbdkitAsync(image);
        const string script = """
            print("read_only", h.is_read_only())
            print("flush", h.can_flush())
            print("fua", h.can_fua())
            print("trim", h.can_trim())
            print("zero", h.can_zero())
            print("multi_conn", h.can_multi_conn())
            print("cache", h.can_cache())
            print("df", h.can_df())
            print("structured", h.get_structured_replies_negotiated())
            print("base_allocation", h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION))
            print("size", h.get_size())
            """;
        var ours = await NbdKit.NbdshAsync(d.NbdUrl("caps"), script, "--base-allocation");
        var theirs = await NbdKit.NbdshAsync(nbdkit.Url, script, "--base-allocation");
        Assert.Equal(theirs, ours);
        Assert.Contains("trim True", ours);
        var sizes = await NbdKit.NbdshAsync(d.NbdUrl("caps"), """
            print(h.get_block_size(nbd.SIZE_MINIMUM), h.get_block_size(nbd.SIZE_PREFERRED), h.get_block_size(nbd.SIZE_MAXIMUM), h.can_fast_zero(), h.is_rotational())
            """);
        Assert.Equal("512 4096 33554432 True False", sizes.Trim());
    }

    [Fact]
    public async Task The_empty_export_name_is_the_configured_default_and_an_unknown_export_is_refused_with_a_reason()
    {
        await using var d = await NbdKit.StartAsync([new("a", "ram/@", "8M"), new("b", "ram/@", "16M")], nbd => nbd["defaultExport"] = "b");
        Assert.Equal(16L << 20, (long)(await NbdKit.InfoAsync(d.NbdUrl()))["export-size"]!);
        var r = await NbdKit.RunAsync("nbdinfo", [d.NbdUrl("nope")], env: NbdKit.Debug);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("No such file or directory", r.Output); // NBD_REP_ERR_UNKNOWN
        Assert.Contains("server error message: no export named 'nope'", r.Output);
        // A client without fixed newstyle may only send EXPORT_NAME: it gets the size and flags
        // with no option reply, and simple replies only.
        var old = await NbdKit.NbdshRawAsync($$"""
            h = nbd.NBD()
            h.set_handshake_flags(nbd.HANDSHAKE_FLAG_NO_ZEROES)
            h.set_export_name("a")
            h.connect_tcp("127.0.0.1", "{{d.NbdPort}}")
            print(h.get_size(), h.get_structured_replies_negotiated(), h.pread(512, 0) == bytearray(512))
            """);
        Assert.True(old.ExitCode == 0, old.ToString());
        Assert.Equal("8388608 False True", old.StdOut.Trim());
    }

    [Fact]
    public async Task Exports_and_ACLs_come_from_the_nbd_section_and_a_reload_applies_them_to_open_connections_too()
    {
        await using var d = await NbdKit.StartAsync([new("pub", "ram/@", "8M"), new("priv", "ram/@", "8M"), new("hidden", "ram/@", "8M")], nbd =>
        {
            nbd["exports"] = new JsonArray("pub", new JsonObject { ["lun"] = "priv", ["allow"] = new JsonArray("10.9.9.0/24"), ["description"] = "not for you" },
                new JsonObject { ["lun"] = "hidden", ["readOnly"] = true });
        });
        var list = await NbdKit.RunOkAsync("nbdinfo", ["--list", "--json", d.NbdUrl()]);
        var names = JsonNode.Parse(list.StdOut)!["exports"]!.AsArray().Select(e => (string)e!["export-name"]!).ToList();
        Assert.Equal(["pub", "hidden"], names); // config order; priv is not shown to 127.0.0.1
        Assert.True((bool)(await NbdKit.InfoAsync(d.NbdUrl("hidden")))["is_read_only"]!);
        var refused = await NbdKit.RunAsync("nbdinfo", [d.NbdUrl("priv")], env: NbdKit.Debug);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("Operation not supported", refused.Output); // NBD_REP_ERR_POLICY, as libnbd words it
        Assert.Contains("server error message: export 'priv' is not exported to 127.0.0.1", refused.Output);

        // A connection to pub stays open while the config drops pub: the reload closes it.
        var holder = NbdKit.NbdshAsync(d.NbdUrl("pub"), "import time\nfor i in range(1200):\n    h.pread(512, 0)\n    time.sleep(0.05)");
        await NbdKit.WaitForSessionsAsync(d, 1, TimeSpan.FromSeconds(20));
        var config = JsonNode.Parse(await File.ReadAllTextAsync(d.ConfigPath))!.AsObject();
        config["nbd"]!["exports"] = new JsonArray("hidden");
        await File.WriteAllTextAsync(d.ConfigPath, config.ToJsonString());
        await d.CliOkAsync("config", "reload");
        var ended = await Assert.ThrowsAsync<Xunit.Sdk.XunitException>(() => holder);
        Assert.Contains("nbd_pread", ended.Message);
        await d.WaitForOutputAsync(o => o.Contains("export pub is no longer offered to it"), TimeSpan.FromSeconds(10), "the revoked connection's log line");
        Assert.NotEqual(0, (await NbdKit.RunAsync("nbdinfo", [d.NbdUrl("pub")])).ExitCode);
    }

    [Fact]
    public async Task A_client_outside_nbd_allow_is_dropped_before_the_greeting()
    {
        await using var d = await NbdKit.StartAsync([new("x", "ram/@", "8M")], nbd => nbd["allow"] = new JsonArray("192.0.2.0/24"));
        var r = await NbdKit.RunAsync("nbdinfo", [d.NbdUrl("x")]);
        Assert.NotEqual(0, r.ExitCode);
        await d.WaitForOutputAsync(o => o.Contains("127.0.0.1 is not in nbd.allow"), TimeSpan.FromSeconds(10), "the refusal in the log");
    }

    [Fact]
    public async Task A_live_connection_shows_in_hrt_ls_and_status_and_the_count_returns_to_zero()
    {
        await using var d = await NbdKit.StartAsync([new("disk", "ram/@", "8M")]);
        var done = d.File("done");
        var client = NbdKit.NbdshAsync(d.NbdUrl("disk"), $$"""
            import os, time
            deadline = time.time() + 60
            while not os.path.exists("{{done}}") and time.time() < deadline:
                time.sleep(0.05)
            """);
        await NbdKit.WaitForSessionsAsync(d, 1, TimeSpan.FromSeconds(20));
        var ls = JsonNode.Parse(await d.CliOkAsync("ls", "--json"))!;
        var session = ls["targets"]![0]!["sessions"]![0]!;
        Assert.Equal("nbd", (string)session["fabric"]!);
        Assert.Equal("disk", (string)session["details"]!["export"]!);
        Assert.Equal("yes", (string)session["details"]!["structuredReplies"]!);
        Assert.StartsWith("nbd,i,0x", (string)session["initiatorPort"]!);
        Assert.Contains("export disk", await d.CliOkAsync("ls"));
        Assert.Contains("nbd 127.0.0.1:", (string)JsonNode.Parse(await d.CliOkAsync("status", "--json"))!["endpoints"]!.AsArray().Last()!);
        await File.WriteAllTextAsync(done, "");
        await client;
        await NbdKit.WaitForSessionsAsync(d, 0, TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task A_bad_nbd_section_is_refused_with_one_sentence_per_problem_at_start_and_at_reload()
    {
        using var dir = new TempDir();
        var config = dir.File("hrt.json");
        await File.WriteAllTextAsync(config, """
            { "nbd": { "listen": ["127.0.0.1:99999"], "maxConnections": "lots", "exports": [ {} ], "tls": { "certificate": "/nonexistent.pem", "key": "/nonexistent.key" },
                       "allow": ["not-an-address"], "defaultExport": "zz" } }
            """);
        var r = await ProcessRunner.RunAsync(RepoPaths.Hrt, ["serve", "--config", config, "--control", dir.File("s.sock"), "--state-dir", dir.File("state"), "--log-dir", dir.File("log"),
            "--portal", $"127.0.0.1:{FreePort.Next()}"], TimeSpan.FromSeconds(60));
        Assert.Equal(2, r.ExitCode);
        foreach (var sentence in new[] { "nbd.listen: '127.0.0.1:99999' is not an address:port", "nbd.maxConnections: 'lots' is not a whole number",
                     "nbd.exports[0]: give a LUN name", "nbd.tls.certificate: /nonexistent.pem with key /nonexistent.key cannot be loaded",
                     "nbd.allow: 'not-an-address' is not an address or network", "nbd.defaultExport: 'zz' is not among nbd.exports" })
            Assert.Contains(sentence, r.StdErr);

        // At a reload the previous settings stay and keep serving.
        await using var d = await NbdKit.StartAsync([new("x", "ram/@", "8M")]);
        var good = await File.ReadAllTextAsync(d.ConfigPath);
        var bad = JsonNode.Parse(good)!.AsObject();
        bad["nbd"]!["maxInFlightMiB"] = 1;
        await File.WriteAllTextAsync(d.ConfigPath, bad.ToJsonString());
        await d.CliAsync("config", "reload");
        await d.WaitForOutputAsync(o => o.Contains("NBD settings unchanged") && o.Contains("nbd.maxInFlightMiB: '1' is not a whole number from 32 to 65536"),
            TimeSpan.FromSeconds(10), "the refused NBD settings");
        Assert.Equal(8L << 20, (long)(await NbdKit.InfoAsync(d.NbdUrl("x")))["export-size"]!);
    }
}
