using System.Text.Json.Nodes;

namespace HandlerRuntime.Nbd.Tests;

/// <summary>One daemon for the error and LU behaviour tests.</summary>
public sealed class ErrorDaemon : IAsyncLifetime
{
    private readonly TempDir dir = new("hrt-nbd-err");

    public HrtDaemon Daemon { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        // A qcow v1 image: no zero clusters, no discard, so neither fast zeroing nor trim is offered.
        var v1 = dir.File("v1.qcow");
        await NbdKit.RunOkAsync("qemu-img", ["create", "-q", "-f", "qcow", v1, "16M"]);
        Daemon = await NbdKit.StartAsync([new("ro", "ram/@", "16M", ReadOnly: true), new("mem", "ram/@", "16M"), new("v1", "qcow/" + v1),
            new("grow", "ram/@", "16M"), new("standby", "ram/@", "16M"), new("gone", "ram/@", "16M")]);
    }

    public async Task DisposeAsync()
    {
        await Daemon.DisposeAsync();
        dir.Dispose();
    }
}

/// <summary>
/// Error replies as nbdkit gives them (read-only EPERM, out of range ENOSPC for writes and
/// EINVAL otherwise, unaligned, unknown flags, commands and flags not advertised, FAST_ZERO
/// ENOTSUP), and the LU's own behaviour reaching NBD through the SCSI core: a resize's unit
/// attention consumed, ALUA standby, a LUN deleted under a connection. libnbd's strict mode is
/// turned off so that it sends what a careless client would.
/// </summary>
public sealed class ErrorAndLunBehaviourTests(ErrorDaemon fixture) : IClassFixture<ErrorDaemon>
{
    private HrtDaemon D => fixture.Daemon;

    /// <summary>Python that runs each (name, call) and prints "name errno" (0 when it worked).</summary>
    private const string Probe = """
        h.set_strict_mode(0)
        def probe(name, fn):
            try:
                fn()
                print(name, 0)
            except nbd.Error as e:
                print(name, e.errnum)
        """ + "\n";

    private static Dictionary<string, int> Results(string output)
        => output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')).ToDictionary(p => p[0], p => int.Parse(p[1]));

    [Fact]
    public async Task A_read_only_LUN_refuses_writes_trims_and_zeroes_with_EPERM_and_still_reads()
    {
        var r = Results(await NbdKit.NbdshAsync(D.NbdUrl("ro"), Probe + """
            assert h.is_read_only()
            probe("write", lambda: h.pwrite(b"x" * 512, 0))
            probe("trim", lambda: h.trim(512, 0))
            probe("zero", lambda: h.zero(512, 0))
            probe("read", lambda: h.pread(512, 0))
            """));
        Assert.Equal(new Dictionary<string, int> { ["write"] = 1, ["trim"] = 1, ["zero"] = 1, ["read"] = 0 }, r);
    }

    [Fact]
    public async Task Out_of_range_unaligned_and_unknown_flag_requests_get_nbdkits_errors_and_the_connection_goes_on()
    {
        var r = Results(await NbdKit.NbdshAsync(D.NbdUrl("mem"), Probe + """
            size = h.get_size()
            probe("read_past_end", lambda: h.pread(512, size))
            probe("read_across_end", lambda: h.pread(1024, size - 512))
            probe("write_past_end", lambda: h.pwrite(b"x" * 512, size))
            probe("zero_past_end", lambda: h.zero(512, size))
            probe("trim_past_end", lambda: h.trim(512, size))
            probe("cache_past_end", lambda: h.cache(512, size))
            probe("status_past_end", lambda: h.block_status(512, size, lambda *a: 0))
            probe("unaligned_offset", lambda: h.pread(512, 100))
            probe("unaligned_length", lambda: h.pwrite(b"x" * 100, 0))
            probe("unknown_flag", lambda: h.pread(512, 0, flags=0x40))
            probe("no_hole_on_write", lambda: h.pwrite(b"x" * 512, 0, flags=nbd.CMD_FLAG_NO_HOLE))
            probe("req_one_on_read", lambda: h.pread(512, 0, flags=nbd.CMD_FLAG_REQ_ONE))
            probe("fua_not_offered", lambda: h.pwrite(b"x" * 512, 0, flags=nbd.CMD_FLAG_FUA))
            probe("flush_not_offered", lambda: h.flush())
            probe("fine_afterwards", lambda: h.pwrite(b"y" * 4096, 4096))
            """, "--base-allocation"));
        Assert.Equal(22, r["read_past_end"]);
        Assert.Equal(22, r["read_across_end"]);
        Assert.Equal(28, r["write_past_end"]);
        Assert.Equal(28, r["zero_past_end"]);
        Assert.Equal(22, r["trim_past_end"]);
        Assert.Equal(22, r["cache_past_end"]);
        Assert.Equal(22, r["status_past_end"]);
        Assert.Equal(22, r["unaligned_offset"]);
        Assert.Equal(22, r["unaligned_length"]);
        Assert.Equal(22, r["unknown_flag"]);
        Assert.Equal(22, r["no_hole_on_write"]);
        Assert.Equal(22, r["req_one_on_read"]);
        Assert.Equal(22, r["fua_not_offered"]); // ram/@ has no cache: neither FUA nor FLUSH is offered
        Assert.Equal(22, r["flush_not_offered"]);
        Assert.Equal(0, r["fine_afterwards"]);
    }

    [Fact]
    public async Task A_device_that_cannot_zero_fast_refuses_FAST_ZERO_with_ENOTSUP_and_offers_no_trim()
    {
        var r = Results(await NbdKit.NbdshAsync(D.NbdUrl("v1"), Probe + """
            assert h.can_zero() and h.can_fast_zero() and not h.can_trim() and h.can_flush() and h.can_fua()
            h.pwrite(b"\x55" * 65536, 0)
            probe("fast_zero", lambda: h.zero(65536, 0, flags=nbd.CMD_FLAG_FAST_ZERO))
            probe("still_data", lambda: (_ for _ in ()).throw(nbd.Error("zeroed", 5)) if h.pread(512, 0) != b"\x55" * 512 else None)
            probe("slow_zero", lambda: h.zero(65536, 0, flags=nbd.CMD_FLAG_FUA))
            probe("zeroed", lambda: (_ for _ in ()).throw(nbd.Error("not zero", 5)) if h.pread(65536, 0) != bytearray(65536) else None)
            probe("trim_not_offered", lambda: h.trim(512, 0))
            """));
        Assert.Equal(new Dictionary<string, int> { ["fast_zero"] = 95, ["still_data"] = 0, ["slow_zero"] = 0, ["zeroed"] = 0, ["trim_not_offered"] = 22 }, r);
    }

    [Fact]
    public async Task A_resize_under_a_connection_is_a_unit_attention_the_fabric_consumes_not_an_error()
    {
        var marker = D.File("resized");
        var client = NbdKit.NbdshAsync(D.NbdUrl("grow"), $$"""
            import os, time
            h.pwrite(b"a" * 4096, 0)
            open("{{marker}}.connected", "w").close()
            deadline = time.time() + 60
            while not os.path.exists("{{marker}}") and time.time() < deadline:
                time.sleep(0.05)
            assert os.path.exists("{{marker}}")
            h.pwrite(b"b" * 4096, 4096)          # the first command after the resize meets CAPACITY DATA HAS CHANGED
            assert h.pread(8192, 0) == b"a" * 4096 + b"b" * 4096
            print("size seen", h.get_size())
            """);
        await WaitForFileAsync(marker + ".connected", client);
        await D.CliOkAsync("log-level", "debug_scsi_cmd");
        await D.CliOkAsync("lun", "resize", "grow", "32M");
        await File.WriteAllTextAsync(marker, "");
        Assert.Contains("size seen 16777216", await client); // the old size until it reconnects
        await D.CliOkAsync("log-level", "info");
        // The core did raise it, to this connection's nexus; NBD never saw it.
        Assert.Matches(@"nbd,i,0x[0-9a-f]{4} LUN grow CDB 8A\w+ \(WRITE\(16\)\) -> CHECK CONDITION UnitAttention 2Ah/09h", D.Output);
        Assert.Equal(32L << 20, (long)(await NbdKit.InfoAsync(D.NbdUrl("grow")))["export-size"]!);
    }

    [Fact]
    public async Task ALUA_standby_fails_reads_with_EIO_until_the_LU_is_active_again()
    {
        var marker = D.File("standby");
        var back = D.File("active");
        var client = NbdKit.NbdshAsync(D.NbdUrl("standby"), Probe + $$"""
            import os, time
            probe("before", lambda: h.pread(512, 0))
            open("{{marker}}.connected", "w").close()
            while not os.path.exists("{{marker}}"):
                time.sleep(0.05)
            probe("standby", lambda: h.pread(512, 0))
            open("{{marker}}.seen", "w").close()
            while not os.path.exists("{{back}}"):
                time.sleep(0.05)
            probe("after", lambda: h.pread(512, 0))
            """);
        await WaitForFileAsync(marker + ".connected", client);
        await D.CliOkAsync("lun", "alua", "standby", "standby");
        await File.WriteAllTextAsync(marker, "");
        await WaitForFileAsync(marker + ".seen", client);
        await D.CliOkAsync("lun", "alua", "standby", "active-optimized");
        await File.WriteAllTextAsync(back, "");
        Assert.Equal(new Dictionary<string, int> { ["before"] = 0, ["standby"] = 5, ["after"] = 0 }, Results(await client));
    }

    [Fact]
    public async Task A_LUN_deleted_under_a_connection_ends_it_and_never_reaches_another_LU()
    {
        var marker = D.File("deleted");
        var client = NbdKit.NbdshAsync(D.NbdUrl("gone"), Probe + $$"""
            import os, time
            probe("before", lambda: h.pread(512, 0))
            open("{{marker}}.connected", "w").close()
            while not os.path.exists("{{marker}}"):
                time.sleep(0.05)
            probe("after", lambda: h.pread(512, 0))
            """);
        await WaitForFileAsync(marker + ".connected", client);
        var number = (int)JsonNode.Parse(await D.CliOkAsync("lun", "list", "--json"))!.AsArray().First(l => (string)l!["name"]! == "gone")!["lun"]!;
        await D.CliOkAsync("lun", "delete", "gone");
        // Another LU at the same number must not be what the old connection now reads.
        await D.CliOkAsync("lun", "create", "usurper", "ram/@", "--size", "16M", "--lun", number.ToString());
        await File.WriteAllTextAsync(marker, "");
        // ESHUTDOWN when the request comes before the config reload that the delete causes
        // (it persists the LUN list), ENOTCONN after it (the reload closes connections to
        // withdrawn exports); never the usurper's data.
        var results = Results(await client);
        Assert.Equal(0, results["before"]);
        Assert.Contains(results["after"], new[] { 108, 107 });
    }

    /// <summary>Waits for a file the nbdsh script creates at a step (or fails with the script's output if it ended first).</summary>
    private static async Task WaitForFileAsync(string path, Task<string> client)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!File.Exists(path))
        {
            if (client.IsCompleted)
                throw new Xunit.Sdk.XunitException($"the client ended before {path}: {await client}");
            Assert.True(DateTime.UtcNow < deadline, $"no {path} within 60 s");
            await Task.Delay(50);
        }
    }
}
