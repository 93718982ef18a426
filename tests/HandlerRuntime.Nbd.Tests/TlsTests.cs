using System.Text.Json.Nodes;

namespace HandlerRuntime.Nbd.Tests;

/// <summary>A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with openssl for the test.</summary>
public sealed class TestCertificates : IDisposable
{
    private readonly TempDir dir = new("hrt-nbd-tls");

    private TestCertificates()
    {
    }

    public string Ca => dir.File("ca-cert.pem");
    public string ServerCert => dir.File("server-cert.pem");
    public string ServerKey => dir.File("server-key.pem");

    /// <summary>What qemu's tls-creds-x509 and libnbd's tls-certificates read: ca-cert.pem only (verify the server).</summary>
    public string ClientDirWithoutCert => dir.File("client-anon");

    /// <summary>The same with client-cert.pem and client-key.pem (the client proves who it is).</summary>
    public string ClientDir => dir.File("client");

    public static async Task<TestCertificates> CreateAsync()
    {
        var c = new TestCertificates();
        string F(string n) => c.dir.File(n);
        async Task Ssl(params string[] args) => await NbdKit.RunOkAsync("openssl", args);
        await File.WriteAllTextAsync(F("server.ext"), "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n");
        await File.WriteAllTextAsync(F("client.ext"), "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n");
        await Ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", F("ca-key.pem"), "-out", c.Ca, "-days", "30", "-subj", "/CN=hrt test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
        foreach (var (who, cn) in new[] { ("server", "localhost"), ("client", "hrt-test-client") })
        {
            await Ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", F($"{who}-key.pem"), "-out", F($"{who}.csr"), "-subj", $"/CN={cn}");
            await Ssl("x509", "-req", "-in", F($"{who}.csr"), "-CA", c.Ca, "-CAkey", F("ca-key.pem"), "-CAcreateserial", "-out", F($"{who}-cert.pem"),
                "-days", "30", "-extfile", F($"{who}.ext"));
        }
        Directory.CreateDirectory(c.ClientDirWithoutCert);
        Directory.CreateDirectory(c.ClientDir);
        File.Copy(c.Ca, Path.Combine(c.ClientDirWithoutCert, "ca-cert.pem"));
        File.Copy(c.Ca, Path.Combine(c.ClientDir, "ca-cert.pem"));
        File.Copy(F("client-cert.pem"), Path.Combine(c.ClientDir, "client-cert.pem"));
        File.Copy(F("client-key.pem"), Path.Combine(c.ClientDir, "client-key.pem"));
        return c;
    }

    /// <summary>The nbd.tls section for these files.</summary>
    public JsonObject Section(bool required, bool verifyClients)
    {
        var o = new JsonObject { ["certificate"] = ServerCert, ["key"] = ServerKey, ["required"] = required };
        if (verifyClients)
            o["clientCa"] = Ca;
        return o;
    }

    public void Dispose() => dir.Dispose();
}

/// <summary>
/// NBD_OPT_STARTTLS with X.509 certificates: qemu's tls-creds-x509 and libnbd's nbds:// URIs
/// against the same daemon, require-TLS refusals (NBD_REP_ERR_TLS_REQD), client certificates
/// checked against a CA, and STARTTLS refused where no TLS is configured.
/// </summary>
public sealed class TlsTests
{
    private static string Nbds(HrtDaemon d, string export, string certDir) => $"nbds://127.0.0.1:{d.NbdPort}/{export}?tls-certificates={certDir}";

    private static string[] QemuTls(string certDir) => ["--object", $"tls-creds-x509,id=tls0,dir={certDir},endpoint=client"];

    private static string QemuNbd(HrtDaemon d, string export) => $"driver=nbd,host=127.0.0.1,port={d.NbdPort},export={export},tls-creds=tls0";

    [Fact]
    public async Task Qemu_img_and_nbdinfo_reach_an_export_over_TLS_and_plain_clients_still_can_when_TLS_is_optional()
    {
        using var certs = await TestCertificates.CreateAsync();
        using var dir = new TempDir("hrt-nbd-tls-data");
        await using var d = await NbdKit.StartAsync([new("disk", "file/" + dir.File("disk.img"), "32M")], nbd => nbd["tls"] = certs.Section(required: false, verifyClients: false));

        var info = await NbdKit.RunOkAsync("nbdinfo", ["--json", Nbds(d, "disk", certs.ClientDirWithoutCert)]);
        Assert.True((bool)JsonNode.Parse(info.StdOut)!["TLS"]!);
        Assert.False((bool)JsonNode.Parse((await NbdKit.RunOkAsync("nbdinfo", ["--json", d.NbdUrl("disk")])).StdOut)!["TLS"]!);

        var qemuInfo = await NbdKit.RunOkAsync("qemu-img", ["info", "--output=json", .. QemuTls(certs.ClientDirWithoutCert), "--image-opts", QemuNbd(d, "disk")]);
        Assert.Equal(32L << 20, (long)JsonNode.Parse(qemuInfo.StdOut)!["virtual-size"]!);

        var source = dir.File("src.img");
        NbdKit.SparseFile(source, 32 << 20, (0, 2), (20, 1));
        await NbdKit.RunOkAsync("qemu-img", ["convert", "-n", .. QemuTls(certs.ClientDirWithoutCert), "-f", "raw", source, "--target-image-opts", QemuNbd(d, "disk")]);
        // Read back over plain NBD and over TLS with nbdcopy: the same bytes.
        var back = dir.File("back.img");
        await NbdKit.RunOkAsync("nbdcopy", [Nbds(d, "disk", certs.ClientDirWithoutCert), back]);
        Assert.True(File.ReadAllBytes(source).AsSpan().SequenceEqual(File.ReadAllBytes(back)), "data read back over TLS differs");
        var io = await NbdKit.RunOkAsync("qemu-io", [.. QemuTls(certs.ClientDirWithoutCert), "--image-opts", QemuNbd(d, "disk"), "-c", "write -P 0x5a 4M 1M", "-c", "read -P 0x5a 4M 1M", "-c", "flush"]);
        Assert.DoesNotContain("fail", io.Output, StringComparison.OrdinalIgnoreCase);
        await d.WaitForOutputAsync(o => o.Contains("export disk") && o.Contains(", TLS)"), TimeSpan.FromSeconds(5), "a TLS connection in the log");
    }

    [Fact]
    public async Task Require_TLS_refuses_every_option_before_STARTTLS_and_client_certificates_must_chain_to_the_CA()
    {
        using var certs = await TestCertificates.CreateAsync();
        await using var d = await NbdKit.StartAsync([new("disk", "ram/@", "16M")], nbd => nbd["tls"] = certs.Section(required: true, verifyClients: true));

        var plain = await NbdKit.RunAsync("nbdinfo", [d.NbdUrl("disk")], env: NbdKit.Debug);
        Assert.NotEqual(0, plain.ExitCode);
        Assert.Contains("server error message: this server requires TLS: send NBD_OPT_STARTTLS first", plain.Output);

        // TLS without a client certificate: the handshake fails on the server's demand.
        var anonymous = await NbdKit.RunAsync("nbdinfo", [Nbds(d, "disk", certs.ClientDirWithoutCert)]);
        Assert.NotEqual(0, anonymous.ExitCode);
        await d.WaitForOutputAsync(o => o.Contains("TLS handshake failed"), TimeSpan.FromSeconds(10), "the refused TLS handshake");

        var withCert = await NbdKit.InfoAsync(Nbds(d, "disk", certs.ClientDir));
        Assert.Equal(16L << 20, (long)withCert["export-size"]!);
        var done = d.File("done");
        var holder = NbdKit.NbdshRawAsync($$"""
            import os, time
            h = nbd.NBD()
            h.set_uri_allow_local_file(True)   # tls-certificates= names a local directory
            h.connect_uri("{{Nbds(d, "disk", certs.ClientDir)}}")
            deadline = time.time() + 60
            while not os.path.exists("{{done}}") and time.time() < deadline:
                time.sleep(0.05)
            print(h.get_tls_negotiated())
            """);
        await NbdKit.WaitForSessionsAsync(d, 1, TimeSpan.FromSeconds(20));
        var session = JsonNode.Parse(await d.CliOkAsync("ls", "--json"))!["targets"]![0]!["sessions"]![0]!["details"]!;
        Assert.Equal("yes", (string)session["tls"]!);
        Assert.Contains("CN=hrt-test-client", (string)session["clientCertificate"]!);
        await File.WriteAllTextAsync(done, "");
        var held = await holder;
        Assert.True(held.ExitCode == 0 && held.StdOut.Trim() == "True", held.ToString());
        var qemu = await NbdKit.RunOkAsync("qemu-io", [.. QemuTls(certs.ClientDir), "--image-opts", QemuNbd(d, "disk"), "-c", "write -P 0x33 0 64k", "-c", "read -P 0x33 0 64k"]);
        Assert.DoesNotContain("fail", qemu.Output, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task STARTTLS_on_a_server_without_TLS_is_refused_by_policy()
    {
        await using var d = await NbdKit.StartAsync([new("disk", "ram/@", "8M")]);
        using var certs = await TestCertificates.CreateAsync();
        var r = await NbdKit.RunAsync("nbdinfo", [Nbds(d, "disk", certs.ClientDirWithoutCert)], env: NbdKit.Debug);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("server error message: TLS is not configured on this server (nbd.tls)", r.Output);
    }
}
