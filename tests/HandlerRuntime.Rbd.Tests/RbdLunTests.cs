using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json.Nodes;

namespace HandlerRuntime.Rbd.Tests;

/// <summary>rbd LUNs over iSCSI against a real Ceph cluster: data, compare-and-write, resize, GET LBA STATUS, config checks.</summary>
[Collection("ceph")]
public sealed class RbdLunTests(CephCluster ceph)
{
    [SkippableFact]
    public async Task QemuImgConvertRoundTripMatchesRbdExport()
    {
        ceph.Require();
        var image = ceph.NewImage("qemu");
        // The LUN creates the missing image, since it was given a size.
        await using var d = await ceph.StartDaemonAsync(("q0", $"rbd/rbd/{image}", "32M"));
        using var dir = new TempDir("hrt-rbd");
        var source = dir.File("source.raw");
        var data = new byte[32 << 20];
        Random.Shared.NextBytes(data.AsSpan(0, 12 << 20)); // data, then a hole the image keeps sparse
        Random.Shared.NextBytes(data.AsSpan(20 << 20, 1 << 20));
        await File.WriteAllBytesAsync(source, data);

        var into = await ProcessRunner.RunAsync("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", source, d.Url(0)]);
        Assert.True(into.ExitCode == 0, into.ToString());
        Assert.True(Scsi.Same(data, await ceph.ExportAsync(image)), "rbd export differs from what qemu-img wrote through the LUN");

        var back = dir.File("back.raw");
        var r = await ProcessRunner.RunAsync("qemu-img", ["convert", "-f", "raw", "-O", "raw", d.Url(0), back]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.True(Scsi.Same(data, await File.ReadAllBytesAsync(back)), "qemu-img read back other data than it wrote");
    }

    [SkippableFact]
    public async Task DataWrittenThroughTheLunIsWhatRbdExportReads()
    {
        ceph.Require();
        var image = ceph.NewImage("data");
        await ceph.RbdAsync("create", "--size", "16M", $"rbd/{image}");
        await using var d = await ceph.StartDaemonAsync(("d0", $"rbd/rbd/{image}", null));
        await using var s = await Scsi.SessionAsync(d, "iqn.2026-11.org.test:data");
        await Scsi.ReadyAsync(s, 0);
        var expected = new byte[16 << 20];
        var block = new byte[64 * 512];
        foreach (var lba in new uint[] { 0, 8191, 16384, 32704 })
        {
            Random.Shared.NextBytes(block);
            var fua = lba == 8191 ? (byte)0x08 : (byte)0; // FUA: write, then flush
            var w = await s.CommandAsync(Cdbs.Write10(lba, 64, fua), block);
            Assert.True(w.Status == 0, w.Describe());
            block.CopyTo(expected, lba * 512L);
        }
        // WRITE SAME of zeros becomes librbd's write zeroes (kept allocated); SYNCHRONIZE CACHE its flush.
        var ws = await s.CommandAsync(Cdbs.WriteSame16(16384 + 8, 16), new byte[512]);
        Assert.True(ws.Status == 0, ws.Describe());
        Array.Clear(expected, (16384 + 8) * 512, 16 * 512);
        Assert.Equal(0, (await s.CommandAsync(Cdbs.SyncCache10())).Status);
        var exported = await ceph.ExportAsync(image);
        Assert.True(Scsi.Same(expected, exported), "rbd export differs from the writes sent through the LUN: " + Scsi.Diff(expected, exported));
    }

    [SkippableFact]
    public async Task CompareAndWriteFromTwoSessionsLetsExactlyOneWin()
    {
        ceph.Require();
        var image = ceph.NewImage("caw");
        await ceph.RbdAsync("create", "--size", "16M", $"rbd/{image}");
        await using var d = await ceph.StartDaemonAsync(("c0", $"rbd/rbd/{image}", null));
        await using var a = await Scsi.SessionAsync(d, "iqn.2026-11.org.test:caw-a", 0x400000000001);
        await using var b = await Scsi.SessionAsync(d, "iqn.2026-11.org.test:caw-b", 0x400000000002);
        await Scsi.ReadyAsync(a, 0);
        await Scsi.ReadyAsync(b, 0);
        const uint Lba = 100;
        var current = Block(0x11);
        Assert.Equal(0, (await a.CommandAsync(Cdbs.Write10(Lba, 1), current)).Status);
        for (var round = 0; round < 20; round++)
        {
            var fromA = Block((byte)(2 * round + 0x20));
            var fromB = Block((byte)(2 * round + 0x21));
            // Both compare against what is there now and race to replace it: librbd's compare-and-write on the OSD lets one win.
            var ra = a.CommandAsync(Scsi.CompareAndWrite(Lba, 1), [.. current, .. fromA]);
            var rb = b.CommandAsync(Scsi.CompareAndWrite(Lba, 1), [.. current, .. fromB]);
            var replies = await Task.WhenAll(ra, rb);
            var winners = replies.Count(r => r.Status == 0);
            Assert.True(winners == 1, $"round {round}: A {replies[0].Describe()}, B {replies[1].Describe()}");
            var loser = replies.Single(r => r.Status != 0);
            Assert.Equal((0x0E, 0x1D, 0x00), loser.SenseCode); // MISCOMPARE DURING VERIFY OPERATION
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(loser.Sense.AsSpan(3))); // INFORMATION: the first byte differs
            current = replies[0].Status == 0 ? fromA : fromB;
            var read = await a.CommandAsync(Cdbs.Read10(Lba, 1), expectedIn: 512);
            Assert.True(Scsi.Same(current, read.Data), $"round {round}: the winner's data is not what reads back");
        }
        // A miscompare names the offset of the first byte that differs.
        var partly = (byte[])current.Clone();
        partly[300] ^= 0xFF;
        var miss = await b.CommandAsync(Scsi.CompareAndWrite(Lba, 1), [.. partly, .. Block(0x99)]);
        Assert.Equal((0x0E, 0x1D, 0x00), miss.SenseCode);
        Assert.Equal(300u, BinaryPrimitives.ReadUInt32BigEndian(miss.Sense.AsSpan(3)));
        // Across a 4 MiB object boundary librbd cannot compare-and-write; the runtime's emulation does, and gets it right.
        const uint Straddle = (4 << 20) / 512 - 1;
        Assert.Equal(0, (await a.CommandAsync(Cdbs.Write10(Straddle, 2), [.. Block(0x41), .. Block(0x42)])).Status);
        var across = await b.CommandAsync(Scsi.CompareAndWrite(Straddle, 2), [.. Block(0x41), .. Block(0x42), .. Block(0x51), .. Block(0x52)]);
        Assert.True(across.Status == 0, across.Describe());
        var exported = await ceph.ExportAsync(image);
        Assert.True(Scsi.Same(current, exported, (int)Lba * 512), "rbd export does not hold the last compare-and-write's data");
        Assert.True(Scsi.Same([.. Block(0x51), .. Block(0x52)], exported, (int)Straddle * 512), "the compare-and-write across objects did not land");
    }

    [SkippableFact]
    public async Task ResizeByTheRbdCliReachesTheInitiator()
    {
        ceph.Require();
        var image = ceph.NewImage("resize");
        await ceph.RbdAsync("create", "--size", "16M", $"rbd/{image}");
        await using var d = await ceph.StartDaemonAsync(("z0", $"rbd/rbd/{image}", null));
        await using var s = await Scsi.SessionAsync(d, "iqn.2026-11.org.test:resize");
        await Scsi.ReadyAsync(s, 0);
        Assert.Equal((16u << 20) / 512 - 1, BinaryPrimitives.ReadUInt32BigEndian((await s.CommandAsync(Cdbs.ReadCapacity10(), expectedIn: 8)).Data));

        await ceph.RbdAsync("resize", "--size", "48M", $"rbd/{image}");
        // The image watch reports the new size; the next command gets the unit attention.
        RawInitiator.Reply r = null!;
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed < TimeSpan.FromSeconds(15))
        {
            r = await s.CommandAsync(Cdbs.TestUnitReady());
            if (r.Status != 0)
                break;
            await Task.Delay(100);
        }
        Assert.Equal((0x06, 0x2A, 0x09), r.SenseCode); // CAPACITY DATA HAS CHANGED
        var cap = await s.CommandAsync(Cdbs.ReadCapacity16(), expectedIn: 32);
        Assert.Equal((48ul << 20) / 512 - 1, BinaryPrimitives.ReadUInt64BigEndian(cap.Data));
        // The new space is usable.
        Assert.Equal(0, (await s.CommandAsync(Cdbs.Write16((40ul << 20) / 512, 8), new byte[4096])).Status);

        // hrt lun resize goes through librbd's resize and the same unit attention.
        await d.CliOkAsync("lun", "resize", "z0", "64M");
        Assert.Equal((0x06, 0x2A, 0x09), (await s.CommandAsync(Cdbs.TestUnitReady())).SenseCode);
        Assert.Contains("size 64 MiB", await ceph.RbdAsync("info", $"rbd/{image}"));
    }

    [SkippableFact]
    public async Task GetLbaStatusFollowsTheImagesAllocation()
    {
        ceph.Require();
        var image = ceph.NewImage("lba");
        await ceph.RbdAsync("create", "--size", "16M", $"rbd/{image}");
        await using var d = await ceph.StartDaemonAsync(("l0", $"rbd/rbd/{image}", null));
        await using var s = await Scsi.SessionAsync(d, "iqn.2026-11.org.test:lba");
        await Scsi.ReadyAsync(s, 0);
        const ulong ObjectBlocks = (4 << 20) / 512;
        var fresh = Scsi.LbaStatus(await s.CommandAsync(Scsi.GetLbaStatus(0), expectedIn: 1024));
        Assert.True(fresh.Count >= 1 && fresh.All(e => e.Deallocated), "a new image reported mapped extents: " + string.Join(", ", fresh));

        // Write inside the second object: the first stays unallocated, the written blocks are mapped.
        var at = ObjectBlocks + 1024;
        Assert.Equal(0, (await s.CommandAsync(Cdbs.Write16(at, 16), new byte[16 * 512].Select((_, i) => (byte)(i | 1)).ToArray())).Status);
        var after = Scsi.LbaStatus(await s.CommandAsync(Scsi.GetLbaStatus(0), expectedIn: 1024));
        Assert.True(after[0] is { Lba: 0, Deallocated: true } && after[0].Blocks >= ObjectBlocks, "the first object should be unallocated: " + string.Join(", ", after));
        var written = after.Single(e => e.Lba <= at && at < e.Lba + e.Blocks);
        Assert.False(written.Deallocated, "the written blocks are not reported mapped: " + string.Join(", ", after));

        // UNMAP of the whole object deallocates it again.
        var unmap = await s.CommandAsync(Cdbs.Unmap(24), Cdbs.UnmapList((ObjectBlocks, (uint)ObjectBlocks)));
        Assert.True(unmap.Status == 0, unmap.Describe());
        var gone = Scsi.LbaStatus(await s.CommandAsync(Scsi.GetLbaStatus(ObjectBlocks), expectedIn: 1024));
        Assert.True(gone[0] is { Deallocated: true } && gone[0].Blocks >= ObjectBlocks, "the unmapped object is still mapped: " + string.Join(", ", gone));
    }

    [SkippableFact]
    public async Task CheckConfigValidatesWithoutOpeningAndReportsAnUnreachableCluster()
    {
        ceph.Require();
        await using var d = await ceph.StartDaemonAsync();
        Assert.Contains("valid", await d.CliOkAsync("check-config", "rbd/rbd/no-such-image;osd_op_timeout=5"));
        foreach (var (bad, says) in new[]
        {
            ("rbd/rbd", "does not name a pool and an image"),
            ("rbd/rbd/x;osd_op_timeout=soon", "is not a number of seconds"),
            ("rbd/rbd/x;conf=relative.conf", "not an absolute path"),
            ("rbd/rbd/x;id=client.admin", "give the part after 'client.'"),
            ("rbd/rbd/x;cache=on", "'cache' is not an rbd option"),
        })
        {
            var r = await d.CliAsync("check-config", bad);
            Assert.True(r.ExitCode != 0 && r.Output.Contains(says), $"{bad}: {r}");
        }
        Assert.Contains("valid", await d.CliOkAsync("check-config", "--reach", $"rbd/rbd/x;conf={ceph.Conf}"));

        // A cluster whose monitors nobody serves: --reach gives up within seconds, saying so.
        using var dir = new TempDir("hrt-rbd-conf");
        var conf = dir.File("gone.conf");
        var port = FreePort.Next();
        await File.WriteAllTextAsync(conf, $"[global]\nfsid = {Guid.NewGuid()}\nmon_host = v2:127.0.0.1:{port}\n[client]\nkeyring = {ceph.Directory}/keyring\n");
        var watch = Stopwatch.StartNew();
        var gone = await d.CliAsync("check-config", "--reach", $"rbd/rbd/x;conf={conf}");
        Assert.True(gone.ExitCode != 0 && gone.Output.Contains("unreachable"), gone.ToString());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"check-config --reach took {watch.Elapsed} on an unreachable cluster");
        // Without --reach nothing is contacted: valid at once.
        Assert.Contains("valid", await d.CliOkAsync("check-config", $"rbd/rbd/x;conf={conf}"));
    }

    [SkippableFact]
    public async Task StatusShowsClusterImageSizeLockAndWatch()
    {
        ceph.Require();
        var image = ceph.NewImage("status");
        await using var d = await ceph.StartDaemonAsync(("s0", $"rbd/rbd/{image}", "8M"));
        var status = JsonNode.Parse(await d.CliOkAsync("status", "--json"))!;
        var lun = status["handlers"]!.AsArray().Single(l => l!["lun"]!.GetValue<string>() == "s0")!["status"]!;
        var fsid = File.ReadAllLines(ceph.Conf).Single(l => l.StartsWith("fsid")).Split('=')[1].Trim();
        Assert.Equal(fsid, lun["cluster"]!.GetValue<string>());
        Assert.Equal("rbd", lun["pool"]!.GetValue<string>());
        Assert.Equal(image, lun["image"]!.GetValue<string>());
        Assert.Equal(8L << 20, lun["size"]!.GetValue<long>());
        Assert.Equal("registered", lun["watch"]!.GetValue<string>());
        Assert.Equal("owner", lun["lock"]!.GetValue<string>());
        Assert.EndsWith("(this gateway)", lun["lockOwner"]!.GetValue<string>());
    }

    private static byte[] Block(byte value) => Enumerable.Repeat(value, 512).ToArray();
}
