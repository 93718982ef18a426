using System.Net.Sockets;
using System.Security.Cryptography;

namespace HandlerRuntime.Iscsi.Tests;

/// <summary>Data through real initiators: QEMU (libiscsi), digests, concurrent initiators, and a hostile client alongside.</summary>
public sealed class DataPathTests
{
    private const string Initiator = "iqn.2026-11.org.handler-runtime:tests";

    [Fact]
    public async Task Qemu_img_round_trip_of_64_MiB_is_byte_exact()
    {
        await using var d = await Daemons.StartRamAsync("64M");
        using var dir = new TempDir("iscsi-qemu");
        var source = dir.File("in.raw");
        var back = dir.File("out.raw");
        var data = new byte[64 << 20];
        new Random(1234).NextBytes(data);
        await File.WriteAllBytesAsync(source, data);
        await Daemons.RunOkAsync("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", source, d.Url()]);
        await Daemons.RunOkAsync("qemu-img", ["convert", "-f", "raw", "-O", "raw", d.Url(), back]);
        var copy = await File.ReadAllBytesAsync(back);
        Assert.Equal(data.Length, copy.Length);
        Assert.True(data.AsSpan().SequenceEqual(copy), "the image read back differs from the one written");
        var info = await Daemons.RunOkAsync("qemu-img", ["info", d.Url()]);
        Assert.Contains("virtual size: 64 MiB", info.StdOut);
    }

    [Fact]
    public async Task Qemu_io_patterns_at_odd_sizes_and_offsets_verify()
    {
        await using var d = await Daemons.StartRamAsync("64M");
        // Unaligned requests make QEMU read-modify-write; large ones cross R2T bursts and Data-In sequences.
        await Daemons.QemuIoAsync(d.Url(),
            "write -P 0x5a 4097 12345",
            "write -P 0xc3 1048575 3000001",
            "write -P 0x11 0 511",
            "write -P 0x7e 67108863 1");
        await Daemons.QemuIoAsync(d.Url(),
            "read -P 0x5a 4097 12345",
            "read -P 0xc3 1048575 3000001",
            "read -P 0x11 0 511",
            "read -P 0x00 511 1",
            "read -P 0x7e 67108863 1",
            "read -P 0x00 4049000 4096");
    }

    [Fact]
    public async Task Header_digest_with_libiscsi_carries_verified_data()
    {
        await using var d = await Daemons.StartRamAsync("16M");
        // QEMU takes the digest as a block option (its URL parser does not accept libiscsi's ?header_digest=).
        var opts = $"driver=iscsi,transport=tcp,portal=127.0.0.1:{d.Port},target={Daemons.Target},lun=0,header-digest=crc32c";
        await Daemons.QemuIoOptsAsync(opts, "write -P 0x42 8192 1000000");
        await Daemons.QemuIoOptsAsync(opts, "read -P 0x42 8192 1000000");
        Assert.Contains("digests CRC32C/None", d.Output);
    }

    [Fact]
    public async Task Header_and_data_digests_protect_writes_reads_and_r2t()
    {
        await using var d = await Daemons.StartRamAsync("16M");
        await using var raw = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0, await raw.LoginAsync(Initiator, Daemons.Target, headerDigest: true, dataDigest: true));
        Assert.True(raw.HeaderDigest && raw.DataDigest);
        await raw.CommandAsync(new byte[6]); // takes the power-on unit attention
        var data = RandomNumberGenerator.GetBytes(600 * 512); // beyond FirstBurstLength: needs R2T
        var write = await raw.CommandAsync(Cdb10(0x2A, 100, 600), data);
        Assert.Equal(0, write.Status);
        Assert.True(write.R2Ts > 0, "a write beyond the first burst should be solicited by R2T");
        var read = await raw.CommandAsync(Cdb10(0x28, 100, 600), expectedIn: data.Length);
        Assert.Equal(0, read.Status);
        Assert.True(read.Data.AsSpan().SequenceEqual(data));
        Assert.True(read.DataIns > 1);
        Assert.Contains("digests CRC32C/CRC32C", d.Output);
        // hrt ls shows the session with its digests.
        var ls = await d.CliOkAsync("ls", "--json");
        Assert.Contains(Initiator, ls);
        Assert.Contains("\"headerDigest\":\"CRC32C\"", ls.Replace(" ", ""), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(0, await raw.LogoutAsync());
    }

    [Fact]
    public async Task A_corrupted_data_digest_closes_that_connection_only()
    {
        await using var d = await Daemons.StartRamAsync("16M");
        await using var good = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0, await good.LoginAsync(Initiator, Daemons.Target, dataDigest: true, isid: 0x400000000002));
        await using var bad = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0, await bad.LoginAsync(Initiator, Daemons.Target, dataDigest: true, isid: 0x400000000003));
        // A NOP-Out whose data digest is wrong.
        var h = new byte[48];
        h[0] = 0x40; h[1] = 0x80; h[7] = 4;
        h[16] = 1; h[20] = 0xFF; h[21] = 0xFF; h[22] = 0xFF; h[23] = 0xFF;
        await bad.Stream.WriteAsync(h);
        await bad.Stream.WriteAsync(new byte[] { 1, 2, 3, 4, 0xDE, 0xAD, 0xBE, 0xEF });
        var (reject, _) = await bad.ReceivePduAsync();
        Assert.Equal(0x3F, reject[0] & 0x3F);
        Assert.Equal(0x02, reject[2]); // data digest error
        Assert.Equal(0, await bad.Stream.ReadAsync(new byte[1]));
        var tur = await good.CommandAsync(new byte[6]);
        Assert.True(tur.Status is 0 or 2); // alive (a first unit attention is fine)
    }

    [Fact]
    public async Task Initiators_killed_during_disk_writes_leave_no_session_behind()
    {
        // A file LUN on the temp directory's filesystem: writes complete on the device's
        // drainer thread, which sends responses in batches; a connection that dies meanwhile
        // must still close, and its session with it.
        using var dir = new TempDir("iscsi-kill");
        await using var d = await Daemons.StartAsync([("f0", "file/" + dir.File("f0.img"), "64M")]);
        const int kills = 4;
        for (var i = 1; i <= kills; i++)
        {
            var start = new System.Diagnostics.ProcessStartInfo(Daemons.Tool("qemu-img"))
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (var a in new[] { "bench", "-f", "raw", "-t", "none", "-w", "-d", "32", "-s", "4096", "-c", "100000000", d.Url() })
                start.ArgumentList.Add(a);
            using var bench = System.Diagnostics.Process.Start(start)!;
            var n = i;
            await d.WaitForOutputAsync(o => CountOf(o, ") logged in to ") >= n, TimeSpan.FromSeconds(30), $"login {n} of the writer");
            await Task.Delay(400); // writes in flight
            bench.Kill();
            await bench.WaitForExitAsync();
        }
        await d.WaitForOutputAsync(o => CountOf(o, ") to " + Daemons.Target + " closed") >= kills, TimeSpan.FromSeconds(30), "every killed writer's session to close");
        var ls = await d.CliOkAsync("ls", "--json");
        Assert.DoesNotContain("\"initiatorPort\"", ls);
        await Daemons.QemuIoAsync(d.Url(), "write -P 0x3c 65536 1048576", "read -P 0x3c 65536 1048576");
        Assert.False(d.HasExited);
    }

    private static int CountOf(string text, string what)
    {
        var count = 0;
        for (var at = text.IndexOf(what, StringComparison.Ordinal); at >= 0; at = text.IndexOf(what, at + what.Length, StringComparison.Ordinal))
            count++;
        return count;
    }

    [Fact]
    public async Task Two_initiators_at_once_each_verify_their_data()
    {
        await using var d = await Daemons.StartRamAsync("64M");
        var first = Daemons.QemuIoAsync(d.Url(), "write -P 0xa1 0 8388608", "read -P 0xa1 0 8388608", "write -P 0xa2 4096 777777", "read -P 0xa2 4096 777777");
        var second = Daemons.QemuIoAsync(d.Url(), "write -P 0xb1 16777216 8388608", "read -P 0xb1 16777216 8388608", "write -P 0xb2 20000000 999999", "read -P 0xb2 20000000 999999");
        await Task.WhenAll(first, second);
        await Daemons.QemuIoAsync(d.Url(), "read -P 0xa1 0 4096", "read -P 0xb1 16777216 1000000", "read -P 0xb2 20000000 999999");
    }

    [Fact]
    public async Task Garbage_clients_do_not_disturb_verified_io_and_the_daemon_stays_up()
    {
        await using var d = await Daemons.StartRamAsync("64M");
        using var stop = new CancellationTokenSource();
        var attacks = 0;
        var hostile = Task.Run(async () =>
        {
            var rng = new Random(99);
            while (!stop.IsCancellationRequested)
            {
                using var c = new TcpClient();
                await c.ConnectAsync("127.0.0.1", d.Port);
                var s = c.GetStream();
                var junk = new byte[rng.Next(1, 4096)];
                rng.NextBytes(junk);
                if (attacks % 3 == 1)
                    junk[0] = 0x43; // looks like a login, with garbage after it
                try
                {
                    await s.WriteAsync(junk);
                    await s.ReadAsync(new byte[512]).AsTask().WaitAsync(TimeSpan.FromSeconds(2));
                }
                catch (Exception e) when (e is IOException or TimeoutException or SocketException)
                {
                }
                attacks++;
            }
        });
        try
        {
            for (var i = 0; i < 4; i++)
            {
                var offset = 2_000_003 * (i + 1);
                await Daemons.QemuIoAsync(d.Url(), $"write -P 0x{0x30 + i:x2} {offset} 1048577", $"read -P 0x{0x30 + i:x2} {offset} 1048577");
            }
            // A garbage PDU after a real login: that connection ends, the daemon does not.
            await using var raw = await RawInitiator.ConnectAsync(d.Port);
            Assert.Equal(0, await raw.LoginAsync(Initiator, Daemons.Target));
            var junkHeader = new byte[48];
            junkHeader[0] = 0x1D; // no such opcode
            await raw.SendPduAsync(junkHeader, []);
            var (reject, _) = await raw.ReceivePduAsync();
            Assert.Equal(0x3F, reject[0] & 0x3F);
            Assert.Equal(0x05, reject[2]); // command not supported; the connection stays
            var tur = await raw.CommandAsync(new byte[6]);
            Assert.True(tur.Status is 0 or 2);
            var oversized = new byte[48];
            oversized[0] = 0x00 | 0x40; oversized[1] = 0x80;
            oversized[5] = 0x7F; // 8 MB data segment, beyond MaxRecvDataSegmentLength
            await raw.Stream.WriteAsync(oversized);
            // The target may answer first (a Reject), but the connection must end: read to its end.
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var sink = new byte[4096];
            try
            {
                while (await raw.Stream.ReadAsync(sink, deadline.Token) > 0)
                {
                }
            }
            catch (IOException)
            {
                // reset rather than closed: ended all the same
            }
        }
        finally
        {
            stop.Cancel();
            await hostile;
        }
        Assert.True(attacks > 0);
        Assert.False(d.HasExited);
        var status = await d.CliOkAsync("status", "--json");
        Assert.Contains("\"sessions\"", status);
        await Daemons.QemuIoAsync(d.Url(), "read -P 0x30 2000003 1048577", "read -P 0x33 8000012 1048577");
    }

    internal static byte[] Cdb10(byte opcode, uint lba, ushort blocks)
    {
        var cdb = new byte[16];
        cdb[0] = opcode;
        cdb[2] = (byte)(lba >> 24); cdb[3] = (byte)(lba >> 16); cdb[4] = (byte)(lba >> 8); cdb[5] = (byte)lba;
        cdb[7] = (byte)(blocks >> 8); cdb[8] = (byte)blocks;
        return cdb;
    }
}
