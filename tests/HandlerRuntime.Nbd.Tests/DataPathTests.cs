using System.Text.Json.Nodes;

namespace HandlerRuntime.Nbd.Tests;

/// <summary>One daemon for the data path tests: a file LUN per test (so none sees another's data) and a ram LUN.</summary>
public sealed class DataPathDaemon : IAsyncLifetime
{
    public const long Size = 64 << 20;
    private readonly TempDir dir = new("hrt-nbd-data");

    public HrtDaemon Daemon { get; private set; } = null!;

    /// <summary>A sparse file with data at 0-2 MiB and 40-43 MiB, also served as LUN "sparse".</summary>
    public string Sparse => dir.File("sparse.img");

    public string File(string name) => dir.File(name);

    public async Task InitializeAsync()
    {
        NbdKit.SparseFile(Sparse, Size, (0, 2), (40, 3));
        var luns = new List<TestLun> { new("sparse", "file/" + Sparse), new("mem", "ram/@", "64M") };
        foreach (var name in new[] { "copy", "qemu", "io", "fio", "simple", "chunks" })
            luns.Add(new(name, "file/" + dir.File(name + ".img"), "64M"));
        Daemon = await NbdKit.StartAsync(luns);
    }

    public async Task DisposeAsync()
    {
        await Daemon.DisposeAsync();
        dir.Dispose();
    }
}

/// <summary>
/// Data through NBD with the clients of Debian 12: nbdcopy (several connections, extents,
/// zeroing), qemu-img and qemu-io, fio's nbd engine at queue depth 32 with verification,
/// libnbd's view of replies (simple and structured, data and hole chunks, block status), and
/// nbdinfo --map compared with nbdkit and qemu-nbd serving the same file.
/// </summary>
public sealed class DataPathTests(DataPathDaemon fixture) : IClassFixture<DataPathDaemon>
{
    private HrtDaemon D => fixture.Daemon;

    [Fact]
    public async Task Nbdinfo_map_of_a_sparse_file_is_what_nbdkit_and_qemu_nbd_say_for_the_same_file()
    {
        await using var nbdkit = await PeerServer.NbdkitAsync(fixture.Sparse, readOnly: true);
        await using var qemu = await PeerServer.QemuNbdAsync(fixture.Sparse, "sparse");
        var hrt = await NbdKit.MapAsync(D.NbdUrl("sparse"));
        Assert.Equal([(0L, 2L << 20, 0), (2L << 20, 38L << 20, 3), (40L << 20, 3L << 20, 0), (43L << 20, 21L << 20, 3)], hrt);
        Assert.Equal(await NbdKit.MapAsync(nbdkit.Url), hrt);
        Assert.Equal(await NbdKit.MapAsync(qemu.Url), hrt);
    }

    [Fact]
    public async Task Nbdcopy_round_trips_a_sparse_image_over_several_connections()
    {
        var source = fixture.File("copy-src.img");
        NbdKit.SparseFile(source, DataPathDaemon.Size, (1, 3), (30, 1), (63, 1));
        // Several connections (CAN_MULTI_CONN), extents read on the source, zeroes written with NO_HOLE.
        await NbdKit.RunOkAsync("nbdcopy", ["--connections=4", "--requests=16", source, D.NbdUrl("copy")]);
        var back = fixture.File("copy-back.img");
        await NbdKit.RunOkAsync("nbdcopy", [D.NbdUrl("copy"), back]);
        Assert.True(Files.SameContent(source, back), "nbdcopy's round trip changed the data");
        // NBD to NBD, from hrt into nbdkit, and the map of what arrived.
        var peerFile = fixture.File("copy-peer.img");
        NbdKit.SparseFile(peerFile, DataPathDaemon.Size);
        await using (var nbdkit = await PeerServer.NbdkitAsync(peerFile))
            await NbdKit.RunOkAsync("nbdcopy", [D.NbdUrl("copy"), nbdkit.Url]);
        Assert.True(Files.SameContent(source, peerFile), "hrt -> nbdkit copy differs");
    }

    [Fact]
    public async Task Qemu_img_convert_and_compare_agree_with_the_source_both_ways()
    {
        var source = fixture.File("qemu-src.img");
        NbdKit.SparseFile(source, DataPathDaemon.Size, (0, 1), (17, 5), (60, 4));
        await NbdKit.RunOkAsync("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", source, D.NbdUrl("qemu")]);
        var same = await NbdKit.RunOkAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", source, D.NbdUrl("qemu")]);
        Assert.Contains("Images are identical", same.StdOut);
        var qcow = fixture.File("qemu-out.qcow2");
        await NbdKit.RunOkAsync("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", D.NbdUrl("qemu"), qcow]);
        Assert.Contains("Images are identical", (await NbdKit.RunOkAsync("qemu-img", ["compare", "-F", "qcow2", "-f", "raw", source, qcow])).StdOut);
        var info = await NbdKit.RunOkAsync("qemu-img", ["info", "--output=json", D.NbdUrl("qemu")]);
        Assert.Equal(DataPathDaemon.Size, (long)JsonNode.Parse(info.StdOut)!["virtual-size"]!);
        // One byte changed on the source: compare sees it at that offset.
        await using (var f = new FileStream(source, FileMode.Open, FileAccess.Write))
        {
            f.Position = (33L << 20) + 4097;
            f.WriteByte(0x5A);
        }
        var differs = await NbdKit.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", source, D.NbdUrl("qemu")]);
        Assert.Equal(1, differs.ExitCode);
        Assert.Contains($"Content mismatch at offset {(33L << 20) + 4096}", differs.StdOut);
    }

    [Fact]
    public async Task Qemu_io_patterns_write_zero_discard_and_flush_read_back()
    {
        var url = D.NbdUrl("io");
        await NbdKit.QemuIoAsync(url, "write -P 0xa5 0 1M", "read -P 0xa5 0 1M", "write -z 1M 1M", "read -P 0 1M 1M",
            "write -P 0x3c 2M 1M", "discard 2M 1M", "read -P 0 2M 1M", "write -P 0x11 -f 3M 64k", "flush", "read -P 0x11 3M 64k",
            "aio_write -P 0x77 8M 64k", "aio_write -P 0x78 9M 64k", "aio_flush", "read -P 0x77 8M 64k", "read -P 0x78 9M 64k");
        // The discard made a hole; the NO_HOLE zeroing (write -z) did not.
        var map = await NbdKit.MapAsync(url);
        Assert.Contains(map, e => e.Offset <= 2L << 20 && e.Offset + e.Length >= 3L << 20 && e.Type == 3);
        Assert.Contains(map, e => e.Offset <= 1L << 20 && e.Offset + e.Length >= 2L << 20 && e.Type == 0);
    }

    [Theory]
    [InlineData("fio", "randwrite", "4k")]
    [InlineData("mem", "randrw", "16k")]
    public async Task Fio_nbd_engine_verifies_at_queue_depth_32(string export, string rw, string bs)
    {
        var r = await NbdKit.RunOkAsync("fio", ["--name=verify", "--ioengine=nbd", $"--uri={D.NbdUrl(export)}", $"--rw={rw}", $"--bs={bs}", "--iodepth=32",
            "--size=32M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--randrepeat=0", "--output-format=json"], TimeSpan.FromMinutes(3));
        var job = JsonNode.Parse(r.StdOut[r.StdOut.IndexOf('{')..])!["jobs"]![0]!;
        Assert.Equal(0, (int)job["error"]!);
        Assert.True((long)job["write"]!["total_ios"]! > 1000, r.StdOut);
        Assert.True((long)job["read"]!["total_ios"]! > 1000, "fio verified nothing: " + r.StdOut);
    }

    [Fact]
    public async Task Without_structured_replies_many_requests_in_flight_get_simple_replies_with_their_data()
    {
        // As the kernel client talks: simple replies only, dozens of requests outstanding.
        var r = await NbdKit.NbdshRawAsync($$"""
            h = nbd.NBD()
            h.set_request_structured_replies(False)
            h.connect_uri("{{D.NbdUrl("simple")}}")
            assert not h.get_structured_replies_negotiated()
            bufs = [nbd.Buffer.from_bytearray(bytearray([i % 251 + 1]) * 65536) for i in range(64)]
            cookies = [h.aio_pwrite(bufs[i], i * 65536) for i in range(64)]
            while h.aio_in_flight() > 0:
                h.poll(-1)
            for c in cookies:
                assert h.aio_command_completed(c)
            reads = [nbd.Buffer(65536) for i in range(64)]
            rc = [h.aio_pread(reads[i], i * 65536) for i in range(64)]
            while h.aio_in_flight() > 0:
                h.poll(-1)
            for i in range(64):
                assert h.aio_command_completed(rc[i])
                assert reads[i].to_bytearray() == bytearray([i % 251 + 1]) * 65536, i
            h.flush()
            print("ok")
            """);
        Assert.True(r.ExitCode == 0 && r.StdOut.Trim() == "ok", r.ToString());
    }

    [Fact]
    public async Task Structured_reads_send_zeroes_as_hole_chunks_unless_DF_and_block_status_honours_REQ_ONE()
    {
        var out_ = await NbdKit.NbdshAsync(D.NbdUrl("chunks"), """
            h.pwrite(b"\x42" * 262144, 0)        # data at 0-256K, the rest of 0-1M zero
            h.trim(1048576, 1048576)             # and a hole at 1-2M
            def kinds(flags):
                seen = []
                def chunk(buf, offset, status, err):
                    seen.append((status, offset, len(buf)))
                    return 0
                data = h.pread_structured(1048576, 0, chunk, flags)
                assert data[:262144] == b"\x42" * 262144 and data[262144:] == bytearray(1048576 - 262144)
                return seen
            plain = kinds(0)
            df = kinds(nbd.CMD_FLAG_DF)
            assert [s for s, o, n in plain] == [nbd.READ_DATA, nbd.READ_HOLE], plain
            assert plain[1][1] == 262144 and plain[1][2] == 1048576 - 262144, plain
            assert df == [(nbd.READ_DATA, 0, 1048576)], df
            ext = []
            h.block_status(4 * 1048576, 0, lambda m, o, e, err: ext.extend(e) or 0)
            assert ext == [262144, 0, 4 * 1048576 - 262144, 3], ext  # allocated, then hole+zero, clipped to the request
            one = []
            h.block_status(4 * 1048576, 0, lambda m, o, e, err: one.extend(e) or 0, nbd.CMD_FLAG_REQ_ONE)
            assert one == [262144, 0], one  # exactly one extent
            h.cache(1048576, 0)
            print("ok", plain, ext)
            """, "--base-allocation");
        Assert.StartsWith("ok", out_.Trim());
    }
}
