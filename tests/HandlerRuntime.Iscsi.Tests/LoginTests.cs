using System.Text.Json.Nodes;

namespace HandlerRuntime.Iscsi.Tests;

/// <summary>Discovery, CHAP (one-way and mutual), ACLs and login limits, with libiscsi's tools and a raw initiator.</summary>
public sealed class LoginTests
{
    private const string Initiator = "iqn.2026-11.org.handler-runtime:tests";

    [Fact]
    public async Task Iscsi_ls_discovers_the_target_and_its_portal()
    {
        await using var d = await Daemons.StartRamAsync();
        var r = await Daemons.RunOkAsync("iscsi-ls", [$"iscsi://127.0.0.1:{d.Port}"]);
        Assert.Contains($"Target:{Daemons.Target} Portal:127.0.0.1:{d.Port},1", r.StdOut);
        var inq = await Daemons.RunOkAsync("iscsi-inq", [d.Url()]);
        Assert.Contains("Peripheral Device Type:DIRECT_ACCESS", inq.StdOut);
    }

    [Fact]
    public async Task Chap_admits_the_right_secret_and_refuses_a_wrong_one_or_none()
    {
        await using var d = await Daemons.StartRamAsync(configure: c => Daemons.TargetConfig(c)["chap"] = new JsonObject { ["user"] = "alice", ["secret"] = "alice-secret-123" });
        var url = $"iscsi://alice%alice-secret-123@127.0.0.1:{d.Port}/{Daemons.Target}/0";
        Assert.Contains("DIRECT_ACCESS", (await Daemons.RunOkAsync("iscsi-inq", [url])).StdOut);
        var wrong = await Daemons.RunAsync("iscsi-inq", [$"iscsi://alice%not-the-secret-1@127.0.0.1:{d.Port}/{Daemons.Target}/0"]);
        Assert.NotEqual(0, wrong.ExitCode);
        var none = await Daemons.RunAsync("iscsi-inq", [d.Url()]);
        Assert.NotEqual(0, none.ExitCode);
        Assert.Contains("requires CHAP", d.Output);
        Assert.Contains("does not match the configured credentials", d.Output);

        // A login that skips the security stage gets the authentication failure status.
        await using var raw = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0x0201, await raw.LoginAsync(Initiator, Daemons.Target));
    }

    [Fact]
    public async Task Mutual_chap_proves_the_target_to_the_initiator()
    {
        await using var d = await Daemons.StartRamAsync(configure: c => Daemons.TargetConfig(c)["chap"] = new JsonObject
        {
            ["user"] = "bob", ["secret"] = "bob-secret-1234", ["mutualUser"] = "target", ["mutualSecret"] = "target-secret-99",
        });
        var url = $"iscsi://bob%bob-secret-1234@127.0.0.1:{d.Port}/{Daemons.Target}/0";
        var right = new Dictionary<string, string> { ["LIBISCSI_CHAP_TARGET_USERNAME"] = "target", ["LIBISCSI_CHAP_TARGET_PASSWORD"] = "target-secret-99" };
        Assert.Contains("DIRECT_ACCESS", (await Daemons.RunOkAsync("iscsi-inq", [url], right)).StdOut);
        // The initiator checks the target's answer: a target that does not know the secret the initiator expects is refused.
        var wrong = new Dictionary<string, string> { ["LIBISCSI_CHAP_TARGET_USERNAME"] = "target", ["LIBISCSI_CHAP_TARGET_PASSWORD"] = "some-other-secret" };
        Assert.NotEqual(0, (await Daemons.RunAsync("iscsi-inq", [url], wrong)).ExitCode);
    }

    [Fact]
    public async Task An_initiator_outside_the_acl_gets_an_authorization_failure()
    {
        await using var d = await Daemons.StartRamAsync(configure: c => Daemons.TargetConfig(c)["initiators"] = new JsonArray(Initiator));
        Assert.Contains("DIRECT_ACCESS", (await Daemons.RunOkAsync("iscsi-inq", ["-i", Initiator, d.Url()])).StdOut);
        Assert.NotEqual(0, (await Daemons.RunAsync("iscsi-inq", ["-i", "iqn.2026-11.org.example:intruder", d.Url()])).ExitCode);
        await using var raw = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0x0202, await raw.LoginAsync("iqn.2026-11.org.example:intruder", Daemons.Target));
        // SendTargets lists only what the initiator may use.
        var ls = await Daemons.RunOkAsync("iscsi-ls", ["-i", "iqn.2026-11.org.example:intruder", $"iscsi://127.0.0.1:{d.Port}"]);
        Assert.DoesNotContain(Daemons.Target, ls.StdOut);
    }

    [Fact]
    public async Task Unknown_target_and_missing_names_get_their_login_status()
    {
        await using var d = await Daemons.StartRamAsync();
        await using (var raw = await RawInitiator.ConnectAsync(d.Port))
            Assert.Equal(0x0203, await raw.LoginAsync(Initiator, "iqn.2026-11.org.example:nothing-here"));
        await using (var raw = await RawInitiator.ConnectAsync(d.Port))
            Assert.Equal(0x0207, await raw.LoginAsync("", Daemons.Target));
        await using (var raw = await RawInitiator.ConnectAsync(d.Port))
            Assert.Equal(0x020A, await raw.LoginAsync(Initiator, Daemons.Target, tsih: 999));
    }

    [Fact]
    public async Task A_connection_that_never_logs_in_is_closed_after_the_login_timeout()
    {
        await using var d = await Daemons.StartRamAsync(configure: c => Daemons.Iscsi(c)["loginTimeoutSeconds"] = 1);
        await using var raw = await RawInitiator.ConnectAsync(d.Port);
        var buffer = new byte[1];
        var read = raw.Stream.ReadAsync(buffer).AsTask();
        var finished = await Task.WhenAny(read, Task.Delay(TimeSpan.FromSeconds(10)));
        Assert.Same(read, finished);
        Assert.Equal(0, await read);
        Assert.Contains("login not finished within 1 s", d.Output);
    }
}
