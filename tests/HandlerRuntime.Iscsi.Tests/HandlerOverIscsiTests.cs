using System.Buffers.Binary;

namespace HandlerRuntime.Iscsi.Tests;

/// <summary>The qcow and zbc handlers reached the way users reach them: over iSCSI, from real initiators.</summary>
public sealed class HandlerOverIscsiTests
{
    private const string Initiator = "iqn.2026-11.org.handler-runtime:tests";

    [Fact]
    public async Task A_qcow2_image_reads_byte_exact_and_stays_consistent_after_writes_through_qemu_over_iscsi()
    {
        using var dir = new TempDir();
        var image = dir.File("vm.qcow2");
        var backing = dir.File("base.raw");
        // A backing file with data, and an overlay with some of its own: reads must merge the two.
        await Daemons.RunOkAsync("qemu-img", ["create", "-q", "-f", "raw", backing, "32M"]);
        await Daemons.RunOkAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x5a 0 8M", backing]);
        await Daemons.RunOkAsync("qemu-img", ["create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", "-b", backing, "-F", "raw", image]);
        await Daemons.RunOkAsync("qemu-io", ["-f", "qcow2", "-c", "write -P 0xa5 4M 1M", "-c", "write -z 6M 512K", image]);
        var expected = dir.File("expected.raw");
        await Daemons.RunOkAsync("qemu-img", ["convert", "-O", "raw", image, expected]);

        await using (var d = await Daemons.StartAsync([("q", "qcow/" + image, "32M")]))
        {
            var fromLun = dir.File("lun.raw");
            await Daemons.RunOkAsync("qemu-img", ["convert", "-O", "raw", "-f", "raw", d.Url(), fromLun]);
            Assert.True(Files.SameContent(expected, fromLun), "reading the qcow2 LUN over iSCSI differs from qemu-img's own reading");

            // Writes at odd places, then the image must still be one qemu-img accepts and the data exact.
            await Daemons.RunOkAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x3c 1536 70k", "-c", "write -P 0xc3 12M 3M", "-c", "discard 4M 128K", d.Url()]);
            await Daemons.RunOkAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x3c 1536 70k", "-c", "write -P 0xc3 12M 3M", "-c", "write -z 4M 128K", expected]);
        }
        var check = await Daemons.RunAsync("qemu-img", ["check", image]);
        Assert.True(check.ExitCode == 0, check.ToString());
        var compare = await Daemons.RunAsync("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", image, expected]);
        Assert.True(compare.ExitCode == 0, compare.ToString());
    }

    [Fact]
    public async Task A_zoned_lun_reports_zones_and_enforces_its_write_pointer_over_iscsi()
    {
        using var dir = new TempDir();
        // Host-managed, 4 MiB zones, 2 conventional: 64 MiB gives 16 zones.
        await using var d = await Daemons.StartAsync([("z", $"zbc/model-HM/zsize-4/conv-2@{dir.File("z.raw")}", "64M")]);
        await using var raw = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0, await raw.LoginAsync(Initiator, Daemons.Target, isid: 0x400000000300));
        await raw.CommandAsync(new byte[6]); // the power-on unit attention

        var inquiry = await raw.CommandAsync([0x12, 0, 0, 0, 96, 0], expectedIn: 96);
        Assert.Equal(0x14, inquiry.Data[0] & 0x1F); // host-managed zoned block device

        var zones = await ReportZonesAsync(raw, 0);
        Assert.Equal(16, zones.Count);
        Assert.Equal((1, 0UL), (zones[0].Type, zones[0].Start)); // conventional
        Assert.Equal(2, zones[2].Type);                          // sequential write required
        var zone = zones[2];
        Assert.Equal(zone.Start, zone.WritePointer);             // empty

        var data = new byte[8 * 512];
        new Random(3).NextBytes(data);
        Assert.Equal(0, (await raw.CommandAsync(Cdbs.Write16(zone.Start, 8), data)).Status);
        var wrongPlace = await raw.CommandAsync(Cdbs.Write16(zone.Start + 100, 8), data);
        Assert.Equal((2, 0x21, 0x04), (wrongPlace.Status, wrongPlace.Sense[12], wrongPlace.Sense[13])); // UNALIGNED WRITE COMMAND
        Assert.Equal(0, (await raw.CommandAsync(Cdbs.Write16(zone.Start + 8, 8), data)).Status);

        var read = await raw.CommandAsync(Cdbs.Read16(zone.Start, 16), expectedIn: 16 * 512);
        Assert.Equal(0, read.Status);
        Assert.Equal(data, read.Data[..(8 * 512)]);
        Assert.Equal(data, read.Data[(8 * 512)..]);
        Assert.Equal(zone.Start + 16, (await ReportZonesAsync(raw, zone.Start))[0].WritePointer);

        // RESET WRITE POINTER empties it again.
        var reset = new byte[16];
        reset[0] = 0x94; reset[1] = 0x04;
        BinaryPrimitives.WriteUInt64BigEndian(reset.AsSpan(2), zone.Start);
        Assert.Equal(0, (await raw.CommandAsync(reset)).Status);
        Assert.Equal(zone.Start, (await ReportZonesAsync(raw, zone.Start))[0].WritePointer);
    }

    private static async Task<List<(int Type, ulong Start, ulong WritePointer)>> ReportZonesAsync(RawInitiator raw, ulong from)
    {
        var cdb = new byte[16];
        cdb[0] = 0x95;
        BinaryPrimitives.WriteUInt64BigEndian(cdb.AsSpan(2), from);
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(10), 64 + 64 * 64);
        var r = await raw.CommandAsync(cdb, expectedIn: 64 + 64 * 64);
        Assert.Equal(0, r.Status);
        var count = (int)BinaryPrimitives.ReadUInt32BigEndian(r.Data) / 64;
        var list = new List<(int, ulong, ulong)>();
        for (var i = 0; i < count; i++)
        {
            var z = r.Data.AsSpan(64 + 64 * i, 64);
            list.Add((z[0] & 0x0F, BinaryPrimitives.ReadUInt64BigEndian(z[16..]), BinaryPrimitives.ReadUInt64BigEndian(z[24..])));
        }
        return list;
    }
}
