using System.Buffers.Binary;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;
using HandlerRuntime.Tests.Handlers;

namespace HandlerRuntime.Tests.Scsi;

/// <summary>
/// The SBC/SPC commands beyond the basics, through the real core over real devices:
/// COMPARE AND WRITE, ORWRITE, WRITE ATOMIC, GET LBA STATUS, SANITIZE, START STOP UNIT and
/// PREVENT ALLOW with removable media, ALUA, and REPORT SUPPORTED OPERATION CODES.
/// </summary>
public sealed class AdvancedCommandTests(BundledHandlers handlers) : IClassFixture<BundledHandlers>
{
    private const int Bs = 512;

    private async Task<ScsiHarness> HarnessAsync(string cfg = "ram/@", long size = 16 << 20, string? state = null, bool removable = false)
    {
        var h = new ScsiHarness(await handlers.OpenAsync(cfg, size), stateDirectory: state, removable: removable);
        await h.ClearUnitAttentionAsync();
        return h;
    }

    private static byte[] Fill(int blocks, byte value) => Enumerable.Repeat(value, blocks * Bs).ToArray();

    private static (SenseKey, byte, byte) S(ScsiResult r) => (r.Sense.Key, r.Sense.Asc, r.Sense.Ascq);

    private static byte[] CompareAndWrite(ulong lba, byte blocks)
    {
        var c = new byte[16];
        c[0] = 0x89;
        BinaryPrimitives.WriteUInt64BigEndian(c.AsSpan(2), lba);
        c[13] = blocks;
        return c;
    }

    [Fact]
    public async Task Compare_and_write_writes_only_when_the_data_matches_and_reports_the_first_difference()
    {
        await using var h = await HarnessAsync();
        Assert.True((await h.RunAsync(Cdbs.Write10(10, 2), Fill(2, 0xA))).Good);
        var ok = await h.RunAsync(CompareAndWrite(10, 2), [.. Fill(2, 0xA), .. Fill(2, 0xB)]);
        Assert.True(ok.Good, ok.ToString());
        Assert.Equal(Fill(2, 0xB), (await h.RunAsync(Cdbs.Read10(10, 2))).DataIn);

        var verify = Fill(2, 0xB);
        verify[700] = 0;
        var miscompare = await h.RunAsync(CompareAndWrite(10, 2), [.. verify, .. Fill(2, 0xC)]);
        Assert.Equal((SenseKey.Miscompare, (byte)0x1D, (byte)0), S(miscompare));
        Assert.Equal(700UL, miscompare.Sense.Information);
        Assert.Equal(Fill(2, 0xB), (await h.RunAsync(Cdbs.Read10(10, 2))).DataIn); // nothing written

        var wrongSize = await h.RunAsync(CompareAndWrite(10, 2), Fill(3, 0xB));
        Assert.Equal(SenseKey.IllegalRequest, wrongSize.Sense.Key);
    }

    [Fact]
    public async Task Compare_and_write_is_atomic_against_concurrent_writers()
    {
        // Many initiators race to claim a lock block with COMPARE AND WRITE (as VMware ATS does)
        // while others keep writing elsewhere: exactly one claim per round may succeed.
        await using var h = await HarnessAsync();
        var free = Fill(1, 0);
        Assert.True((await h.RunAsync(Cdbs.Write10(0, 1), free)).Good);
        for (var round = 1; round <= 20; round++)
        {
            var claims = Enumerable.Range(0, 8).Select(async i =>
            {
                var nexus = ScsiHarness.NewNexus($"iqn.2026-11.org.test:host{i}");
                await h.ClearUnitAttentionAsync(nexus);
                var mine = Fill(1, (byte)(i + 1));
                var r = await h.RunAsync(CompareAndWrite(0, 1), [.. free, .. mine], nexus: nexus);
                var noise = h.RunAsync(Cdbs.Write10((uint)(100 + i), 1), mine, nexus: nexus);
                await noise;
                return r.Good;
            }).ToList();
            var won = (await Task.WhenAll(claims)).Count(g => g);
            Assert.Equal(1, won);
            Assert.True((await h.RunAsync(Cdbs.Write10(0, 1), free)).Good);
        }
    }

    [Fact]
    public async Task Orwrite_ors_the_data_into_the_blocks()
    {
        await using var h = await HarnessAsync();
        Assert.True((await h.RunAsync(Cdbs.Write10(5, 1), Fill(1, 0xA0))).Good);
        var c = Cdbs.Write16(5, 1).With(0x8B);
        Assert.True((await h.RunAsync(c, Fill(1, 0x05))).Good);
        Assert.Equal(Fill(1, 0xA5), (await h.RunAsync(Cdbs.Read10(5, 1))).DataIn);
    }

    [Fact]
    public async Task Get_lba_status_reports_unmapped_extents_on_file_and_ram()
    {
        using var dir = new TempDir();
        foreach (var cfg in new[] { "ram/@", "file/" + dir.File("g.img") })
        {
            await using var h = await HarnessAsync(cfg);
            Assert.True((await h.RunAsync(Cdbs.Write10(0, 64), Fill(64, 1))).Good);
            Assert.True((await h.RunAsync(Cdbs.Unmap(24), Cdbs.UnmapList((16, 16)))).Good);
            var c = new byte[16];
            c[0] = 0x9E; c[1] = 0x12;
            BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(10), 8 + 16 * 4);
            var d = (await h.RunAsync(c)).DataIn;
            Assert.True(BinaryPrimitives.ReadUInt32BigEndian(d) >= 4 + 16 * 3, cfg);
            (ulong Lba, uint Blocks, int Status) Desc(int i) => (BinaryPrimitives.ReadUInt64BigEndian(d.AsSpan(8 + 16 * i)), BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(16 + 16 * i)), d[20 + 16 * i] & 0x0F);
            Assert.Equal((0UL, 16U, 0), Desc(0));
            Assert.Equal((16UL, 16U, 1), Desc(1));
            Assert.Equal(32UL, Desc(2).Lba);
            Assert.Equal(0, Desc(2).Status);
        }
    }

    [Fact]
    public async Task Write_atomic_lands_whole_and_a_crash_after_the_journal_is_replayed()
    {
        using var dir = new TempDir();
        var img = dir.File("a.img");
        var state = Directory.CreateDirectory(dir.File("state")).FullName;
        var data = Fill(8, 0x77);
        var cdb = Cdbs.Write16(40, 0).With(0x9C);
        BinaryPrimitives.WriteUInt16BigEndian(cdb.AsSpan(12), 8);
        cdb[10] = 1; // bytes 10-11 are reserved: refused
        await using (var h = await HarnessAsync("file/" + img, state: state))
        {
            var limits = (await h.RunAsync(Cdbs.Inquiry(true, 0xB0))).DataIn;
            Assert.True(BinaryPrimitives.ReadUInt32BigEndian(limits.AsSpan(44)) >= 256);
            Assert.Equal(SenseKey.IllegalRequest, (await h.RunAsync(cdb, data)).Sense.Key);
            cdb[10] = cdb[11] = 0;
            Assert.True((await h.RunAsync(cdb, data)).Good);
            Assert.Equal(data, (await h.RunAsync(Cdbs.Read10(40, 8))).DataIn);
        }

        // A crash between the durable journal and the device write: the next start replays it.
        await using (var device = await handlers.OpenAsync("file/" + img))
        {
            var journal = new AtomicWriteJournal(state);
            await Assert.ThrowsAsync<IOException>(async () => await journal.WriteAsync(new CrashingDevice(device), 80 * Bs, Fill(4, 0x66), default));
        }
        Assert.NotEqual(Fill(4, 0x66), (await File.ReadAllBytesAsync(img))[(80 * Bs)..(84 * Bs)]);
        await using (var h = await HarnessAsync("file/" + img, state: state))
        {
            await h.Lun.RecoverAsync(default);
            Assert.Equal(Fill(4, 0x66), (await h.RunAsync(Cdbs.Read10(80, 4))).DataIn);
            // ...once: a later write is never clobbered by an old record.
            Assert.True((await h.RunAsync(Cdbs.Write10(80, 4), Fill(4, 0x11))).Good);
            await h.Lun.RecoverAsync(default);
            Assert.Equal(Fill(4, 0x11), (await h.RunAsync(Cdbs.Read10(80, 4))).DataIn);
        }
    }

    [Fact]
    public async Task Write_atomic_is_not_offered_without_a_state_directory()
    {
        await using var h = await HarnessAsync();
        var cdb = Cdbs.Write16(0, 0).With(0x9C);
        cdb[13] = 1;
        Assert.Equal((SenseKey.IllegalRequest, (byte)0x20, (byte)0), S(await h.RunAsync(cdb, Fill(1, 1))));
        Assert.Equal(0U, BinaryPrimitives.ReadUInt32BigEndian((await h.RunAsync(Cdbs.Inquiry(true, 0xB0))).DataIn.AsSpan(44)));
    }

    [Fact]
    public async Task Sanitize_overwrites_in_the_background_refusing_commands_with_progress_and_block_erase_zeroes()
    {
        await using var h = await HarnessAsync(size: 8 << 20);
        h.Lun.Sanitizer.BytesPerSecond = 4 << 20; // about two seconds for 8 MiB
        Assert.True((await h.RunAsync(Cdbs.Write10(0, 8), Fill(8, 0x55))).Good);
        var pattern = new byte[4 + 4];
        pattern[0] = 0x01; // one pass
        pattern[3] = 4;    // a 4-byte pattern
        pattern[4] = 0xDE; pattern[5] = 0xAD; pattern[6] = 0xBE; pattern[7] = 0xEF;
        Assert.True((await h.RunAsync([0x48, 0x81, 0, 0, 0, 0, 0, 0, 8, 0], pattern)).Good); // IMMED

        var busy = await h.RunAsync(Cdbs.TestUnitReady());
        Assert.Equal((SenseKey.NotReady, (byte)0x04, (byte)0x1B), S(busy));
        Assert.True((await h.RunAsync(Cdbs.Inquiry())).Good);
        var progress = (await h.RunAsync(Cdbs.RequestSense())).DataIn;
        Assert.Equal(0x1B, progress[13]);
        Assert.Equal(0x80, progress[15] & 0x80); // SKSV: progress indication

        for (var i = 0; i < 100 && !(await h.RunAsync(Cdbs.TestUnitReady())).Good; i++)
            await Task.Delay(100);
        var read = (await h.RunAsync(Cdbs.Read10(0, 1))).DataIn;
        for (var i = 0; i < Bs; i += 4)
            Assert.Equal(new byte[] { 0xDE, 0xAD, 0xBE, 0xEF }, read[i..(i + 4)]);

        Assert.True((await h.RunAsync([0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0])).Good); // BLOCK ERASE, waits
        Assert.All((await h.RunAsync(Cdbs.Read10(0, 8))).DataIn, b => Assert.Equal(0, b));
        Assert.Equal(SenseKey.IllegalRequest, (await h.RunAsync([0x48, 0x03, 0, 0, 0, 0, 0, 0, 0, 0])).Sense.Key); // no CRYPTO ERASE
        Assert.Equal(SenseKey.IllegalRequest, (await h.RunAsync([0x48, 0x01, 0, 0, 0, 0, 0, 0, 4, 0], new byte[4])).Sense.Key); // too short
    }

    [Fact]
    public async Task An_interrupted_sanitize_resumes_when_the_lu_comes_back()
    {
        using var dir = new TempDir();
        var state = Directory.CreateDirectory(dir.File("state")).FullName;
        await File.WriteAllTextAsync(Path.Combine(state, "sanitize.json"), "{\"Kind\":2,\"Pattern\":\"\",\"Invert\":false,\"Passes\":1}");
        await using var h = new ScsiHarness(await handlers.OpenAsync("ram/@", 1 << 20), stateDirectory: state);
        for (var i = 0; i < 50 && h.Lun.Sanitizer.InProgress; i++)
            await Task.Delay(50);
        Assert.False(File.Exists(Path.Combine(state, "sanitize.json")));
        Assert.False(h.Lun.Sanitizer.FailureMode);
    }

    [Fact]
    public async Task A_removable_medium_ejects_and_loads_and_prevent_holds_it_until_the_nexus_is_gone()
    {
        await using var h = await HarnessAsync(removable: true);
        Assert.Equal(0x80, (await h.RunAsync(Cdbs.Inquiry())).DataIn[1] & 0x80); // RMB
        byte[] Eject() => [0x1B, 0, 0, 0, 0x02, 0];
        byte[] Load() => [0x1B, 0, 0, 0, 0x03, 0];
        byte[] Prevent(bool on) => [0x1E, 0, 0, 0, (byte)(on ? 1 : 0), 0];

        Assert.True((await h.RunAsync(Prevent(true))).Good);
        Assert.Equal((SenseKey.IllegalRequest, (byte)0x53, (byte)0x02), S(await h.RunAsync(Eject())));
        h.Target.NexusLost(h.Nexus); // the session that prevented removal is gone
        Assert.True((await h.RunAsync(Eject())).Good);
        Assert.Equal((SenseKey.NotReady, (byte)0x3A, (byte)0), S(await h.RunAsync(Cdbs.Read10(0, 1))));
        Assert.Equal((SenseKey.NotReady, (byte)0x3A, (byte)0), S(await h.RunAsync(Cdbs.TestUnitReady())));
        Assert.True((await h.RunAsync(Load())).Good);
        Assert.True((await h.RunAsync(Cdbs.Read10(0, 1))).Good);
    }

    [Fact]
    public async Task A_fixed_medium_refuses_eject_but_accepts_power_conditions()
    {
        await using var h = await HarnessAsync();
        Assert.Equal(0, (await h.RunAsync(Cdbs.Inquiry())).DataIn[1] & 0x80);
        Assert.Equal(SenseKey.IllegalRequest, (await h.RunAsync([0x1B, 0, 0, 0, 0x02, 0])).Sense.Key);
        Assert.True((await h.RunAsync([0x1B, 0, 0, 0, 0x30, 0])).Good); // STANDBY: no effect
        Assert.True((await h.RunAsync(Cdbs.Read10(0, 1))).Good);
    }

    [Fact]
    public async Task Alua_states_gate_commands_and_changes_are_reported()
    {
        await using var h = await HarnessAsync();
        var other = ScsiHarness.NewNexus();
        await h.ClearUnitAttentionAsync(other);
        Assert.Equal(0x30, (await h.RunAsync(Cdbs.Inquiry())).DataIn[5] & 0x30); // TPGS 11b
        byte[] Rtpg() => [0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        var groups = (await h.RunAsync(Rtpg())).DataIn;
        Assert.Equal(12U, BinaryPrimitives.ReadUInt32BigEndian(groups));
        Assert.Equal(0, groups[4] & 0x0F); // active/optimized
        Assert.Equal(ScsiHarness.Port.PortGroup, BinaryPrimitives.ReadUInt16BigEndian(groups.AsSpan(6)));

        byte[] Stpg(byte state) => [0, 0, 0, 0, state, 0, 0, (byte)ScsiHarness.Port.PortGroup];
        Assert.True((await h.RunAsync([0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], Stpg(2))).Good); // standby
        Assert.Equal((SenseKey.NotReady, (byte)0x04, (byte)0x0B), S(await h.RunAsync(Cdbs.Read10(0, 1))));
        Assert.True((await h.RunAsync(Cdbs.ModeSense6(0x3F))).Good); // allowed in standby
        var ua = await h.RunAsync(Cdbs.Inquiry(), nexus: other);
        Assert.True(ua.Good);
        Assert.Equal((SenseKey.UnitAttention, (byte)0x2A, (byte)0x06), S(await h.RunAsync(Cdbs.ModeSense6(0x3F), nexus: other)));
        Assert.Equal(1, (await h.RunAsync(Rtpg())).DataIn[9]); // status: changed by SET TARGET PORT GROUPS
        Assert.Equal(SenseKey.IllegalRequest, (await h.RunAsync([0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], Stpg(0xF))).Sense.Key); // transitioning cannot be asked for

        // An implicit change (an operator's) is reported to every nexus, this one included.
        h.Lun.SetAccessState(HandlerRuntime.Scsi.Alua.AsymmetricAccessState.Unavailable);
        Assert.Equal((SenseKey.UnitAttention, (byte)0x2A, (byte)0x06), S(await h.RunAsync(Cdbs.ModeSense6(0x3F))));
        Assert.Equal((SenseKey.NotReady, (byte)0x04, (byte)0x0C), S(await h.RunAsync(Cdbs.ModeSense6(0x3F))));
        h.Lun.SetAccessState(HandlerRuntime.Scsi.Alua.AsymmetricAccessState.Transitioning);
        Assert.Equal(0x2A, (await h.RunAsync(Cdbs.RequestSense())).DataIn[12]); // REQUEST SENSE takes the UA
        Assert.Equal((SenseKey.NotReady, (byte)0x04, (byte)0x0A), S(await h.RunAsync(Cdbs.TestUnitReady())));
        Assert.True((await h.RunAsync(Rtpg())).Good);
        Assert.Equal(2, (await h.RunAsync(Rtpg())).DataIn[9]); // status: implicit
        Assert.Equal((SenseKey.NotReady, (byte)0x04, (byte)0x0A), S(await h.RunAsync([0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], Stpg(0))));
        h.Lun.SetAccessState(HandlerRuntime.Scsi.Alua.AsymmetricAccessState.ActiveOptimized);
        Assert.Equal(SenseKey.UnitAttention, (await h.RunAsync(Cdbs.Read10(0, 1))).Sense.Key);
        Assert.True((await h.RunAsync(Cdbs.Read10(0, 1))).Good);
    }

    [Fact]
    public async Task Report_supported_operation_codes_matches_what_the_lu_really_does()
    {
        await using var h = await HarnessAsync();
        var all = (await h.RunAsync([0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0])).DataIn;
        var length = BinaryPrimitives.ReadUInt32BigEndian(all);
        var listed = new List<(byte Op, ushort Sa, bool HasSa, ushort CdbLength)>();
        for (var at = 4; at < 4 + length; at += 8)
            listed.Add((all[at], BinaryPrimitives.ReadUInt16BigEndian(all.AsSpan(at + 2)), (all[at + 5] & 1) != 0, BinaryPrimitives.ReadUInt16BigEndian(all.AsSpan(at + 6))));
        Assert.Contains(listed, l => l.Op == 0x89);              // COMPARE AND WRITE
        Assert.DoesNotContain(listed, l => l.Op is 0x95 or 0x94); // ZBC only on zoned LUs
        Assert.DoesNotContain(listed, l => l.Op == 0x9C);         // WRITE ATOMIC needs a state directory
        foreach (var (op, sa, hasSa, cdbLength) in listed)
        {
            // Each listed command is reported alone with usage data whose first byte is the opcode,
            // and a CDB that sets only bits that usage data allows is not refused as malformed.
            var one = (await h.RunAsync([0xA3, 0x0C, (byte)(hasSa ? 2 : 1), op, (byte)(sa >> 8), (byte)sa, 0, 0, 1, 0, 0, 0])).DataIn;
            Assert.Equal(0x03, one[1] & 0x07);
            Assert.Equal(cdbLength, BinaryPrimitives.ReadUInt16BigEndian(one.AsSpan(2)));
            Assert.Equal(op, one[4]);
        }
        // An opcode that has service actions asked for without one is an invalid field.
        Assert.Equal(SenseKey.IllegalRequest, (await h.RunAsync([0xA3, 0x0C, 1, 0x9E, 0, 0, 0, 0, 1, 0, 0, 0])).Sense.Key);
        var tmf = (await h.RunAsync([0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0])).DataIn;
        Assert.Equal(0xDA, tmf[0]); // ATS, ATSS, CTSS, LURS, TRS
    }

    /// <summary>A device that fails every write: the crash in the middle of WRITE ATOMIC.</summary>
    private sealed class CrashingDevice(IBlockDevice inner) : IBlockDevice
    {
        public DeviceGeometry Geometry => inner.Geometry;
        public DeviceCapabilities Capabilities => inner.Capabilities;
        public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken) => inner.ReadAsync(offset, destination, cancellationToken);
        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken) => throw new IOException("power lost");
        public ValueTask DisposeAsync() => default;
    }
}
