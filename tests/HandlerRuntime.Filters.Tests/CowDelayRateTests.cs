using System.Diagnostics;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace HandlerRuntime.Filters.Tests;

/// <summary>cow/ over read-only bases (memory and file overlays, a restart and a crash), delay/'s latency and error/'s rate, through real initiators.</summary>
public sealed class CowDelayRateTests(ITestOutputHelper output)
{
    private const int Size = 16 << 20;

    [Fact]
    public async Task Cow_writes_land_in_the_overlay_the_base_is_unchanged_zeroes_read_back_and_a_file_overlay_survives_restart_and_crash()
    {
        using var dir = new TempDir("hrt-cow");
        string memBase = dir.File("mem-base.img"), fileBase = dir.File("file-base.img"), overlay = dir.File("vm.cow");
        Scsi.RandomFile(memBase, Size, 1);
        Scsi.RandomFile(fileBase, Size, 2);
        var digests = new[] { Scsi.Sha256(memBase), Scsi.Sha256(fileBase) };
        await using var d = await Scsi.StartAsync([
            Scsi.Lun("mem", "cow/@file/" + memBase, null, 0),
            Scsi.Lun("disk", $"cow/file={overlay},granularity=4K@file/{fileBase}", null, 1)]);
        await using (var ini = await Scsi.LoginAsync(d, 0, 1))
        {
            foreach (var (lun, basePath) in new[] { (0UL, memBase), (1UL, fileBase) })
            {
                var baseBytes = await File.ReadAllBytesAsync(basePath);
                var expect = (byte[])baseBytes.Clone();
                // A whole-chunk write, then a one-block write inside an untouched chunk (the rest of the chunk copied up from the base).
                await Scsi.WriteAndVerifyAsync(ini, lun, 2048, Scsi.Random(128 << 10, 10), $"LUN {lun} 128 KiB");
                Scsi.Random(128 << 10, 10).CopyTo(expect, 2048 * 512);
                await Scsi.WriteAndVerifyAsync(ini, lun, 4097, Scsi.Random(512, 11), $"LUN {lun} one block");
                Scsi.Random(512, 11).CopyTo(expect, 4097 * 512);
                // UNMAP and WRITE SAME (zeros, no UNMAP bit: write zeroes) over base data, whole chunks and parts of chunks.
                var unmap = await ini.CommandAsync(Cdbs.Unmap(24), Cdbs.UnmapList((6000, 300)), lun: lun);
                Assert.True(unmap.Status == Scsi.Good, $"UNMAP answered {unmap.Describe()}");
                Array.Clear(expect, 6000 * 512, 300 * 512);
                var same = await ini.CommandAsync(Cdbs.WriteSame16(9001, 77), new byte[512], lun: lun);
                Assert.True(same.Status == Scsi.Good, $"WRITE SAME answered {same.Describe()}");
                Array.Clear(expect, 9001 * 512, 77 * 512);
                // qemu-io (libiscsi) sees the merged device too.
                await Daemons.QemuIoAsync(d.Url((int)lun), "write -P 0x3d 8M 192k", "read -P 0x3d 8M 192k", "read -P 0 3072000 153600");
                Array.Fill(expect, (byte)0x3d, 8 << 20, 192 << 10);
                await AssertDeviceAsync(ini, lun, expect, $"LUN {lun}");
            }
            var sync = await ini.CommandAsync(Cdbs.SyncCache10(), lun: 1);
            Assert.True(sync.Status == Scsi.Good, sync.Describe());
        }
        Assert.Equal(digests, new[] { Scsi.Sha256(memBase), Scsi.Sha256(fileBase) });

        // A clean restart: the file overlay is kept; the memory one is gone (its LUN reads the base again).
        await d.RestartAsync();
        await using (var ini = await Scsi.LoginAsync(d, 0, 1))
        {
            var r = await Scsi.ReadAsync(ini, 1, 2048, 256);
            Assert.True(r.Data.AsSpan().SequenceEqual(Scsi.Random(128 << 10, 10)), "the file overlay lost a write across a restart");
            var m = await Scsi.ReadAsync(ini, 0, 2048, 256);
            var memBaseBytes = await File.ReadAllBytesAsync(memBase);
            Assert.True(m.Data.AsSpan().SequenceEqual(memBaseBytes.AsSpan(2048 * 512, 128 << 10)), "the memory overlay outlived its LUN");
            // Written and flushed, then the daemon killed: the flushed write is there after the crash.
            await Scsi.WriteAndVerifyAsync(ini, 1, 12000, Scsi.Random(64 << 10, 12), "before the crash");
            var sync = await ini.CommandAsync(Cdbs.SyncCache10(), lun: 1);
            Assert.True(sync.Status == Scsi.Good, sync.Describe());
        }
        await d.RestartAsync(kill: true);
        await using (var ini = await Scsi.LoginAsync(d, 1))
        {
            var r = await Scsi.ReadAsync(ini, 1, 12000, 128);
            Assert.True(r.Data.AsSpan().SequenceEqual(Scsi.Random(64 << 10, 12)), "a flushed write to the file overlay was lost in a crash");
            var z = await Scsi.ReadAsync(ini, 1, 6000, 300);
            Assert.True(z.Data.AsSpan().IndexOfAnyExcept((byte)0) < 0, "unmapped blocks do not read as zeros after a crash");
        }
        Assert.Equal(digests[1], Scsi.Sha256(fileBase));
    }

    private static async Task AssertDeviceAsync(RawInitiator ini, ulong lun, byte[] expect, string what)
    {
        for (uint lba = 0; lba < expect.Length / 512; lba += 256)
        {
            var r = await Scsi.ReadAsync(ini, lun, lba, 256);
            Assert.True(r.Status == Scsi.Good, $"{what}: READ at {lba} answered {r.Describe()}");
            if (!r.Data.AsSpan().SequenceEqual(expect.AsSpan((int)lba * 512, 256 * 512)))
            {
                var at = r.Data.AsSpan().CommonPrefixLength(expect.AsSpan((int)lba * 512, 256 * 512));
                Assert.Fail($"{what}: block {lba + at / 512} is not the merge of the base and the writes");
            }
        }
    }

    [Fact]
    public async Task Delay_adds_at_least_its_latency_and_error_rate_fails_about_its_share()
    {
        using var dir = new TempDir("hrt-delay");
        await using var d = await Scsi.StartAsync([
            Scsi.Lun("plain", "file/" + dir.File("plain.img"), "16M", 0),
            Scsi.Lun("slow", "delay/read-ms=40,write-ms=60,flush-ms=80@file/" + dir.File("slow.img"), "16M", 1),
            Scsi.Lun("flaky", "error/rate=25%,ops=read,seed=7@file/" + dir.File("flaky.img"), "16M", 2)]);
        await using var ini = await Scsi.LoginAsync(d, 0, 1, 2);

        var watch = new Stopwatch();
        var seen = new List<string>();
        foreach (var (what, cdb, data, ms) in new (string, byte[], byte[]?, int)[]
        {
            ("READ(10)", Cdbs.Read10(0, 8), null, 40), ("WRITE(10)", Cdbs.Write10(0, 8), new byte[4096], 60), ("SYNCHRONIZE CACHE(10)", Cdbs.SyncCache10(), null, 80),
        })
        {
            for (var i = 0; i < 5; i++)
            {
                watch.Restart();
                var r = await ini.CommandAsync(cdb, data, data is null && what.StartsWith("READ") ? 4096 : 0, lun: 1);
                var took = watch.Elapsed.TotalMilliseconds;
                Assert.True(r.Status == Scsi.Good, $"{what} answered {r.Describe()}");
                Assert.True(took >= ms, $"{what} through delay/ took {took:F1} ms, less than its {ms} ms delay");
                seen.Add($"{what} {took:F1} ms (delay {ms})");
            }
        }
        output.WriteLine(string.Join('\n', seen));

        const int Reads = 400;
        var failed = 0;
        for (var i = 0; i < Reads; i++)
        {
            var r = await Scsi.ReadAsync(ini, 2, (uint)(i * 8 % 32000), 8);
            if (r.Status == Scsi.CheckCondition)
            {
                Assert.Equal("MEDIUM ERROR 11h/00h", r.Describe());
                failed++;
            }
            else
                Assert.Equal(Scsi.Good, r.Status);
        }
        output.WriteLine($"error/rate=25%: {failed} of {Reads} reads failed ({100.0 * failed / Reads:F1}%)");
        Assert.InRange(failed, Reads * 15 / 100, Reads * 35 / 100);
        var w = await Scsi.WriteAsync(ini, 2, 0, new byte[4096]); // ops=read: writes never fail
        Assert.Equal(Scsi.Good, w.Status);
    }
}
