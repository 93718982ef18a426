using System.Diagnostics;
using System.Text.Json.Nodes;

namespace HandlerRuntime.Rbd.Tests;

/// <summary>The cluster misbehaving under an rbd LUN: an OSD gone under I/O, and two gateways sharing one image.</summary>
[Collection("ceph")]
public sealed class RbdFailureTests(CephCluster ceph)
{
    private const int OsdOpTimeout = 5;

    [SkippableFact]
    public async Task OsdStoppedUnderIoFailsCommandsWithNotReadyAndTheLunRecovers()
    {
        ceph.Require();
        var image = ceph.NewImage("osd");
        await ceph.RbdAsync("create", "--size", "16M", $"rbd/{image}");
        await using var d = await ceph.StartDaemonAsync(("o0", $"rbd/rbd/{image};osd_op_timeout={OsdOpTimeout}", null));
        await using var s = await Scsi.SessionAsync(d, "iqn.2026-11.org.test:osd");
        await Scsi.ReadyAsync(s, 0);
        for (uint lba = 0; lba < 64; lba += 8)
            Assert.Equal(0, (await s.CommandAsync(Cdbs.Write10(lba, 8), new byte[4096])).Status);

        var osd = ceph.OsdPid();
        Process.GetProcessById(osd).Kill();
        try
        {
            // The first write after the OSD died waits for osd_op_timeout, then fails with NOT READY, in
            // transition (retryable), never HARDWARE ERROR and never a hang.
            var watch = Stopwatch.StartNew();
            var failed = await s.CommandAsync(Cdbs.Write10(128, 8), new byte[4096]);
            var took = watch.Elapsed;
            Assert.True(failed.Status == 2, $"a write to a dead OSD answered {failed.Describe()}");
            Assert.Equal((0x02, 0x04, 0x0A), failed.SenseCode);
            Assert.True(took < TimeSpan.FromSeconds(OsdOpTimeout + 10), $"the write failed only after {took}");
            // Meanwhile the LUN answers media commands NOT READY at once instead of queueing them.
            watch.Restart();
            var read = await s.CommandAsync(Cdbs.Read10(0, 8), expectedIn: 4096);
            Assert.Equal((0x02, 0x04, 0x0A), read.SenseCode);
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(2), $"a read while the cluster is away took {watch.Elapsed}");
            var status = JsonNode.Parse(await d.CliOkAsync("status", "--json"))!["handlers"]![0]!["status"]!;
            Assert.Equal("unreachable", status["connection"]!.GetValue<string>());
        }
        finally
        {
            await ceph.StartOsdAsync();
        }

        // The recovery pipeline's probe succeeds once the OSD is back; then commands are served again.
        var back = Stopwatch.StartNew();
        RawInitiator.Reply w = null!;
        var data = Enumerable.Range(0, 4096).Select(i => (byte)(i * 7)).ToArray();
        while (back.Elapsed < TimeSpan.FromSeconds(90))
        {
            w = await s.CommandAsync(Cdbs.Write10(256, 8), data);
            if (w.Status == 0)
                break;
            Assert.Equal((0x02, 0x04, 0x0A), w.SenseCode);
            await Task.Delay(250);
        }
        Assert.True(w.Status == 0, $"the LUN did not recover within {back.Elapsed} of the OSD's restart: {w.Describe()}\n{d.Output}");
        var r = await s.CommandAsync(Cdbs.Read10(256, 8), expectedIn: 4096);
        Assert.True(r.Status == 0 && Scsi.Same(data, r.Data), r.Describe());
        Assert.True(Scsi.Same(data, await ceph.ExportAsync(image), 256 * 512), "rbd export does not hold the write made after recovery");
    }

    [SkippableFact]
    public async Task TwoGatewaysServeOneImageWithAluaFollowingTheExclusiveLock()
    {
        ceph.Require();
        var image = ceph.NewImage("ha");
        await ceph.RbdAsync("create", "--size", "16M", $"rbd/{image}");
        await using var a = await ceph.StartDaemonAsync(("h0", $"rbd/rbd/{image}", null));
        await using var b = await ceph.StartDaemonAsync(("h0", $"rbd/rbd/{image}", null));
        await using var sa = await Scsi.SessionAsync(a, "iqn.2026-11.org.test:ha");
        await using var sb = await Scsi.SessionAsync(b, "iqn.2026-11.org.test:ha");
        await Scsi.ReadyAsync(sa, 0);
        await Scsi.ReadyAsync(sb, 0);

        // A opened first and took the lock: active/optimized. B: active/non-optimized, and it serves reads.
        Assert.Equal(0x0, await Scsi.AccessStateAsync(sa));
        Assert.Equal(0x1, await Scsi.AccessStateAsync(sb));
        var first = Enumerable.Repeat((byte)0xA1, 4096).ToArray();
        Assert.Equal(0, (await sa.CommandAsync(Cdbs.Write10(0, 8), first)).Status);
        var readB = await sb.CommandAsync(Cdbs.Read10(0, 8), expectedIn: 4096);
        Assert.True(readB.Status == 0 && Scsi.Same(first, readB.Data), "B does not read what A wrote: " + readB.Describe());

        // An initiator failing over writes through B: B takes the lock (fencing A) and the write lands.
        var second = Enumerable.Repeat((byte)0xB2, 4096).ToArray();
        var wb = await sb.CommandAsync(Cdbs.Write10(0, 8), second);
        Assert.True(wb.Status == 0, "the failover write through B: " + wb.Describe());
        Assert.Equal(0x0, await Scsi.AccessStateAsync(sb));
        var statusB = JsonNode.Parse(await b.CliOkAsync("status", "--json"))!["handlers"]![0]!["status"]!;
        Assert.EndsWith("(this gateway)", statusB["lockOwner"]!.GetValue<string>());

        // A learns it lost the lock: its initiators get ASYMMETRIC ACCESS STATE CHANGED and it reports non-optimized.
        var watch = Stopwatch.StartNew();
        RawInitiator.Reply ua = null!;
        while (watch.Elapsed < TimeSpan.FromSeconds(15))
        {
            ua = await sa.CommandAsync(Cdbs.TestUnitReady());
            if (ua.Status != 0 && ua.SenseCode == (0x06, 0x2A, 0x06))
                break;
            await Task.Delay(200);
        }
        Assert.True(ua.SenseCode == (0x06, 0x2A, 0x06), "A never reported the access state change: " + ua.Describe() + "\n" + a.Output);
        Assert.Equal(0x1, await Scsi.AccessStateAsync(sa));
        Assert.True(Scsi.Same(second, await ceph.ExportAsync(image)), "the image does not hold B's write");

        // Failing back: A was fenced and reconnects; a write through A takes the lock back.
        RawInitiator.Reply wa = null!;
        var third = Enumerable.Repeat((byte)0xC3, 4096).ToArray();
        watch.Restart();
        while (watch.Elapsed < TimeSpan.FromSeconds(60))
        {
            wa = await sa.CommandAsync(Cdbs.Write10(0, 8), third);
            if (wa.Status == 0)
                break;
            Assert.True(wa.SenseCode is (0x02, 0x04, 0x0A) or (0x06, _, _), "a write through the fenced gateway: " + wa.Describe());
            await Task.Delay(250);
        }
        Assert.True(wa.Status == 0, "A never took the lock back: " + wa.Describe() + "\n" + a.Output);
        Assert.Equal(0x0, await Scsi.AccessStateAsync(sa));
        Assert.True(Scsi.Same(third, await ceph.ExportAsync(image)), "the image does not hold A's write");
    }
}
