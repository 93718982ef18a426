using System.Buffers.Binary;
using HandlerRuntime.Scsi;
using HandlerRuntime.Scsi.Copy;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Scsi;

/// <summary>
/// EXTENDED COPY(LID1) and RECEIVE COPY RESULTS through the real SCSI core: copies within one
/// LU and between LUs of one target registry (data checked against a model), block size
/// conversion and padding, overlapping ranges, the senses of failed segments, durability,
/// held results, access control, and the task sets of the LUs involved.
/// </summary>
public sealed class ExtendedCopyTests
{
    private static byte Pattern(long at, int seed) => (byte)(at * 31 + at / 509 + seed * 101);

    private static MemoryDevice Filled(long blocks, int blockSize = 512, int seed = 1, ThreadModel model = ThreadModel.Parallel, int maxTransferBlocks = 0, bool fua = false)
    {
        var d = new MemoryDevice(blocks, blockSize, model, maxTransferBlocks, fua);
        d.Fill(0, (int)blocks, at => Pattern(at, seed));
        return d;
    }

    /// <summary>What a segment does, applied to copies of the devices' bytes: a copy through a whole-segment buffer.</summary>
    private static void Model(byte[] source, long sourceOffset, byte[] destination, long destinationOffset, int bytes)
        => source.AsSpan((int)sourceOffset, bytes).ToArray().CopyTo(destination.AsSpan((int)destinationOffset));

    [Fact]
    public async Task Copies_within_one_lu_as_libiscsi_does_and_through_the_copy_manager_id()
    {
        var rig = await CopyRig.StartAsync(Filled(4096));
        var lun = rig.Luns[0];
        var expected = (byte[])rig.Devices[0].Data.Clone();
        Model(expected, 0, expected, (4096 - 64) * 512, 64 * 512);
        Model(expected, 10 * 512, expected, 2000 * 512, 3 * 512);

        var r = await rig.CopyAsync(0, new CopyList().Naa(lun).Segment(0, 0, 64, 0, 4096 - 64).Build());
        Assert.True(r.Good, r.ToString());
        // FFFFh names the copy manager's own LU without any CSCD descriptor (SPC-4 6.4.5.1).
        r = await rig.CopyAsync(0, new CopyList().Segment(0xFFFF, 0xFFFF, 3, 10, 2000).Build());
        Assert.True(r.Good, r.ToString());
        Assert.Equal(expected, rig.Devices[0].Data);
    }

    [Fact]
    public async Task Copies_between_three_luns_with_several_cscds_and_segments_in_order()
    {
        var rig = await CopyRig.StartAsync(Filled(2048, seed: 1), Filled(2048, seed: 2), Filled(2048, seed: 3));
        var (a, b, c) = (rig.Devices[0].Data.Clone() as byte[], rig.Devices[1].Data.Clone() as byte[], rig.Devices[2].Data.Clone() as byte[]);
        // Segments run in order: later ones see what earlier ones wrote.
        Model(a!, 0, b!, 100 * 512, 16 * 512);
        Model(b!, 90 * 512, c!, 0, 32 * 512);
        Model(c!, 0, a!, 1000 * 512, 8 * 512);
        Model(a!, 1000 * 512, a!, 1500 * 512, 4 * 512);
        Model(c!, 2040 * 512, b!, 2040 * 512, 8 * 512);

        var list = new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1]).Naa(rig.Luns[2])
            .Segment(0, 1, 16, 0, 100)
            .Segment(1, 2, 32, 90, 0)
            .Segment(2, 0, 8, 0, 1000)
            .Segment(0, 0, 4, 1000, 1500)
            .Segment(2, 0xFFFF, 8, 2040, 2040); // FFFFh: the copy manager's LU, B
        var r = await rig.CopyAsync(1, list.Build());
        Assert.True(r.Good, r.ToString());
        Assert.Equal(a, rig.Devices[0].Data);
        Assert.Equal(b, rig.Devices[1].Data);
        Assert.Equal(c, rig.Devices[2].Data);
    }

    [Fact]
    public async Task The_copy_manager_need_be_neither_source_nor_destination()
    {
        var rig = await CopyRig.StartAsync(Filled(1024, seed: 1), Filled(1024, seed: 2), Filled(1024, seed: 3));
        var before = (byte[])rig.Devices[1].Data.Clone();
        var r = await rig.CopyAsync(1, new CopyList().Naa(rig.Luns[2]).Naa(rig.Luns[0]).Segment(1, 0, 40, 7, 900).Build());
        Assert.True(r.Good, r.ToString());
        Assert.Equal(rig.Devices[0].Blocks(7, 40), rig.Devices[2].Blocks(900, 40));
        Assert.Equal(before, rig.Devices[1].Data);
    }

    [Fact]
    public async Task A_copy_larger_than_a_chunk_moves_in_bounded_transfers()
    {
        var rig = await CopyRig.StartAsync(Filled(8192, seed: 4), Filled(8192, seed: 5, maxTransferBlocks: 96));
        var expected = (byte[])rig.Devices[1].Data.Clone();
        Model(rig.Devices[0].Data, 17 * 512, expected, 4000 * 512, 3001 * 512);
        var r = await rig.CopyAsync(0, new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1]).Segment(0, 1, 3001, 17, 4000).Build());
        Assert.True(r.Good, r.ToString());
        Assert.Equal(expected, rig.Devices[1].Data);
        Assert.Equal(96 * 512, rig.Devices[1].LargestWrite); // the destination's maximum transfer bounds each step
        Assert.True(rig.Devices[1].Writes >= 3001 / 96);

        r = await rig.CopyAsync(1, new CopyList().Naa(rig.Luns[1]).Naa(rig.Luns[0]).Segment(0, 1, 4096, 0, 0).Build());
        Assert.True(r.Good, r.ToString());
        Assert.True(rig.Devices[0].LargestWrite <= CopyLimits.ChunkBytes);
        Assert.Equal(rig.Devices[1].Blocks(0, 4096), rig.Devices[0].Blocks(0, 4096));
    }

    [Theory]
    [InlineData(100, 130, 50)] // destination starts inside the source: copied from the end backwards
    [InlineData(300, 290, 50)] // destination ends inside the source: copied forwards
    [InlineData(500, 500, 20)] // onto itself
    [InlineData(600, 608, 64)] // overlap smaller than one chunk
    public async Task Overlapping_ranges_in_one_lu_copy_as_if_the_source_were_read_first(int source, int destination, int blocks)
    {
        var rig = await CopyRig.StartAsync(Filled(1024, maxTransferBlocks: 8));
        var expected = (byte[])rig.Devices[0].Data.Clone();
        Model(expected, source * 512L, expected, destination * 512L, blocks * 512);
        var r = await rig.CopyAsync(0, new CopyList().Naa(rig.Luns[0]).Segment(0, 0, (ushort)blocks, (ulong)source, (ulong)destination).Build());
        Assert.True(r.Good, r.ToString());
        Assert.Equal(expected, rig.Devices[0].Data);
    }

    [Fact]
    public async Task Block_sizes_convert_by_the_dc_bit_and_inexact_segments_pad_only_when_allowed()
    {
        var rig = await CopyRig.StartAsync(Filled(4096, 512, seed: 6), Filled(512, 4096, seed: 7));
        var (small, large) = (rig.Devices[0], rig.Devices[1]);
        var s = (byte[])small.Data.Clone();
        var l = (byte[])large.Data.Clone();

        // DC=0: 16 source blocks of 512 bytes are 2 destination blocks of 4096.
        Model(s, 0, l, 10 * 4096L, 16 * 512);
        // DC=1: 3 destination blocks of 4096 bytes come from 24 source blocks.
        Model(s, 100 * 512, l, 20 * 4096L, 3 * 4096);
        // 4096-byte blocks into 512-byte ones, counted either way.
        Model(l, 5 * 4096L, s, 3000 * 512, 2 * 4096);
        var list = new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1])
            .Segment(0, 1, 16, 0, 10)
            .Segment(0, 1, 3, 100, 20, dc: true)
            .Segment(1, 0, 16, 5, 3000, dc: true);
        var r = await rig.CopyAsync(0, list.Build());
        Assert.True(r.Good, r.ToString());
        Assert.Equal(s, small.Data);
        Assert.Equal(l, large.Data);

        // Three 512-byte blocks are not whole 4096-byte blocks: refused without PAD, before anything moves.
        r = await rig.CopyAsync(0, new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1]).Segment(0, 1, 8, 0, 50).Segment(0, 1, 3, 0, 30).Build());
        SenseAssert.Is(r, SenseKey.CopyAborted, 0x26, 0x0A);
        Assert.Equal(1U, BinaryPrimitives.ReadUInt32BigEndian(r.SenseBytes.AsSpan(8))); // segment 1
        Assert.Equal((0xA0, 10), (r.SenseBytes[15], (int)BinaryPrimitives.ReadUInt16BigEndian(r.SenseBytes.AsSpan(16)))); // SKSV, SD; NUMBER OF BLOCKS
        Assert.Equal(l, large.Data);

        // With PAD on the destination, its last block is completed with zeros.
        Model(s, 0, l, 30 * 4096L, 3 * 512);
        l.AsSpan(30 * 4096 + 3 * 512, 4096 - 3 * 512).Clear();
        r = await rig.CopyAsync(0, new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1], pad: true).Segment(0, 1, 3, 0, 30).Build());
        Assert.True(r.Good, r.ToString());
        Assert.Equal(l, large.Data);

        // With PAD on the source, DC=1: three 512-byte blocks from one 4096-byte block, its excess dropped.
        Model(l, 7 * 4096L, s, 3500 * 512, 3 * 512);
        r = await rig.CopyAsync(0, new CopyList().Naa(rig.Luns[1], pad: true).Naa(rig.Luns[0]).Segment(0, 1, 3, 7, 3500, dc: true).Build());
        Assert.True(r.Good, r.ToString());
        Assert.Equal(s, small.Data);

        // CAT asks for the residue to carry into the next segment, which is not supported.
        r = await rig.CopyAsync(0, new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1], pad: true).Segment(0, 1, 3, 0, 30, cat: true).Segment(0, 1, 5, 3, 31).Build());
        SenseAssert.Is(r, SenseKey.CopyAborted, 0x26, 0x0A);
    }

    [Fact]
    public async Task A_segment_past_the_end_is_copy_aborted_with_its_number_and_pointer_and_nothing_moves()
    {
        var rig = await CopyRig.StartAsync(Filled(4096, seed: 8), Filled(4096, seed: 9));
        var before = (byte[])rig.Devices[1].Data.Clone();
        var list = new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1])
            .Segment(0, 1, 8, 0, 0)
            .Segment(0, 1, 2048, 0, 4095); // libiscsi's ValidSegDescr: beyond the destination's capacity
        var r = await rig.CopyAsync(0, list.Build());
        SenseAssert.Is(r, SenseKey.CopyAborted, 0x00, 0x00);
        Assert.Equal(0x70, r.SenseBytes[0]);
        Assert.Equal(1U, BinaryPrimitives.ReadUInt32BigEndian(r.SenseBytes.AsSpan(8))); // COMMAND-SPECIFIC INFORMATION: segment 1
        Assert.Equal(0xA0, r.SenseBytes[15]); // SKSV, SD: the pointer counts from the segment descriptor
        Assert.Equal(20, BinaryPrimitives.ReadUInt16BigEndian(r.SenseBytes.AsSpan(16))); // DESTINATION LOGICAL BLOCK ADDRESS
        Assert.Equal(before, rig.Devices[1].Data); // segment 0 did not run either

        r = await rig.CopyAsync(0, new CopyList().Naa(rig.Luns[0]).Segment(0, 0, 1, 4096, 0).Build());
        SenseAssert.Is(r, SenseKey.CopyAborted, 0x00, 0x00);
        Assert.Equal(12, BinaryPrimitives.ReadUInt16BigEndian(r.SenseBytes.AsSpan(16))); // SOURCE LOGICAL BLOCK ADDRESS

        // Descriptor-format sense carries the same: command-specific information and segment pointer descriptors.
        rig.Luns[0].Mode.DescriptorSense = true;
        r = await rig.CopyAsync(0, list.Build());
        SenseAssert.Is(r, SenseKey.CopyAborted, 0x00, 0x00);
        Assert.Equal(0x72, r.SenseBytes[0]);
        Assert.Equal((0x01, 0x0A), (r.SenseBytes[8], r.SenseBytes[9]));
        Assert.Equal(1UL, BinaryPrimitives.ReadUInt64BigEndian(r.SenseBytes.AsSpan(12)));
        Assert.Equal((0x02, 0x06, 0xA0), (r.SenseBytes[20], r.SenseBytes[21], r.SenseBytes[24]));
        Assert.Equal(20, BinaryPrimitives.ReadUInt16BigEndian(r.SenseBytes.AsSpan(25)));
    }

    [Fact]
    public async Task Copy_targets_that_cannot_be_reached_or_do_not_match_are_copy_aborted()
    {
        var rig = await CopyRig.StartAsync(Filled(1024), Filled(1024));
        var lun = rig.Luns[0];

        // libiscsi's ValidSegDescr: a destination index past the one CSCD descriptor.
        var r = await rig.CopyAsync(0, new CopyList().Naa(lun).Segment(0, 1, 8, 0, 0).Build());
        SenseAssert.Is(r, SenseKey.CopyAborted, 0x0D, 0x02);
        Assert.Equal(0xA0, r.SenseBytes[15]);
        Assert.Equal(6, BinaryPrimitives.ReadUInt16BigEndian(r.SenseBytes.AsSpan(16))); // DESTINATION CSCD DESCRIPTOR ID

        // An NAA no LU of this runtime has.
        r = await rig.CopyAsync(0, new CopyList().Naa(lun).Naa(0x3000_0000_0000_0001UL).Segment(0, 1, 8, 0, 0).Build());
        SenseAssert.Is(r, SenseKey.CopyAborted, 0x0D, 0x02);

        // The right LU with the wrong DISK BLOCK LENGTH: the pointer is into the parameter list (SD=0).
        var list = new CopyList().Naa(lun).Naa(rig.Luns[1].Identity.Naa, blockSize: 4096).Segment(0, 1, 8, 0, 0);
        r = await rig.CopyAsync(0, list.Build());
        SenseAssert.Is(r, SenseKey.CopyAborted, 0x0D, 0x03);
        Assert.Equal(0x80, r.SenseBytes[15]);
        Assert.Equal(list.CscdOffset(1) + 29, BinaryPrimitives.ReadUInt16BigEndian(r.SenseBytes.AsSpan(16)));

        // A CSCD that is not a block device cannot take part in a block to block segment.
        r = await rig.CopyAsync(0, new CopyList().Naa(lun).Naa(rig.Luns[1].Identity.Naa, peripheralType: 0x01).Segment(0, 1, 8, 0, 0).Build());
        SenseAssert.Is(r, SenseKey.CopyAborted, 0x0D, 0x03);
    }

    [Fact]
    public async Task Write_protection_is_the_destinations_not_the_copy_managers()
    {
        var rig = await CopyRig.StartAsync([Filled(1024, seed: 1), Filled(1024, seed: 2)], [true, true], readOnly: [true, false]);
        // The read-only LU receives the command and is only read: allowed.
        var r = await rig.CopyAsync(0, new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1]).Segment(0, 1, 4, 0, 0).Build());
        Assert.True(r.Good, r.ToString());
        Assert.Equal(rig.Devices[0].Blocks(0, 4), rig.Devices[1].Blocks(0, 4));
        // Writing it is not, whoever receives the command.
        r = await rig.CopyAsync(1, new CopyList().Naa(rig.Luns[1]).Naa(rig.Luns[0]).Segment(0, 1, 4, 100, 100).Build());
        SenseAssert.Is(r, SenseKey.CopyAborted, 0x27, 0x00);
        Assert.Equal(6, BinaryPrimitives.ReadUInt16BigEndian(r.SenseBytes.AsSpan(16)));
    }

    [Theory]
    [InlineData(true, false, 0, 0)] // write cache on: plain writes
    [InlineData(false, false, 1, 0)] // write cache off, no native FUA: each write is followed by a flush
    [InlineData(false, true, 0, 1)] // write cache off, native FUA
    public async Task Writes_are_as_durable_as_the_destinations_write_cache_asks(bool writeCache, bool fua, int flushesPerWrite, int fuaPerWrite)
    {
        var destination = Filled(1024, seed: 2, fua: fua);
        var rig = await CopyRig.StartAsync([Filled(1024, seed: 1), destination], [true, writeCache]);
        var r = await rig.CopyAsync(0, new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1]).Segment(0, 1, 16, 0, 0).Build());
        Assert.True(r.Good, r.ToString());
        Assert.Equal(destination.Writes * flushesPerWrite, destination.Flushes);
        Assert.Equal(destination.Writes * fuaPerWrite, destination.FuaWrites);
        Assert.True(destination.Writes > 0);
    }

    [Fact]
    public async Task The_cdb_and_an_empty_parameter_list_are_checked_as_spc_says()
    {
        var rig = await CopyRig.StartAsync(Filled(1024));
        Assert.True((await rig.RunAsync(0, CopyCdbs.ExtendedCopy(0))).Good); // no parameter list: nothing to do
        var cdb = CopyCdbs.ExtendedCopy(0);
        cdb[2] = 1;
        SenseAssert.Is(await rig.RunAsync(0, cdb), SenseKey.IllegalRequest, 0x24, 0x00);
        cdb = CopyCdbs.ExtendedCopy(0);
        cdb[1] = 0x01; // EXTENDED COPY(LID4) is not offered
        var r = await rig.RunAsync(0, cdb);
        SenseAssert.Is(r, SenseKey.IllegalRequest, 0x24, 0x00);
        Assert.Equal(1, BinaryPrimitives.ReadUInt16BigEndian(r.SenseBytes.AsSpan(16)));
        var list = new CopyList().Naa(rig.Luns[0]).Segment(0, 0, 1, 0, 1).Build();
        SenseAssert.Is(await rig.RunAsync(0, CopyCdbs.ExtendedCopy(list.Length), list[..40]), SenseKey.IllegalRequest, 0x0E, 0x03);
        SenseAssert.Is(await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(0x01)), SenseKey.IllegalRequest, 0x24, 0x00); // RECEIVE DATA: no held data
        var bad = CopyCdbs.ReceiveCopyResults(CopyCdbs.OperatingParameters);
        bad[2] = 1; // LIST IDENTIFIER is reserved for OPERATING PARAMETERS
        SenseAssert.Is(await rig.RunAsync(0, bad), SenseKey.IllegalRequest, 0x24, 0x00);
    }

    [Fact]
    public async Task Standard_inquiry_sets_3pc()
    {
        var rig = await CopyRig.StartAsync(Filled(64));
        Assert.Equal(0x08, (await rig.RunAsync(0, Cdbs.Inquiry())).DataIn[5] & 0x08);
    }

    [Fact]
    public async Task Operating_parameters_report_what_the_parser_enforces()
    {
        var rig = await CopyRig.StartAsync(Filled(64));
        var d = (await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.OperatingParameters))).DataIn;
        Assert.Equal(46, d.Length);
        Assert.Equal(42U, BinaryPrimitives.ReadUInt32BigEndian(d));
        Assert.Equal(0x01, d[4]); // SNLID
        Assert.Equal(CopyLimits.MaxCscdDescriptors, BinaryPrimitives.ReadUInt16BigEndian(d.AsSpan(8)));
        Assert.Equal(CopyLimits.MaxSegmentDescriptors, BinaryPrimitives.ReadUInt16BigEndian(d.AsSpan(10)));
        Assert.Equal((uint)(CopyLimits.MaxCscdDescriptors * 32 + CopyLimits.MaxSegmentDescriptors * 28), BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(12)));
        Assert.Equal(65535U * 4096, BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(16)));
        Assert.Equal(0U, BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(20))); // no inline data
        Assert.Equal(CopyLimits.MaxConcurrentCopies, BinaryPrimitives.ReadUInt16BigEndian(d.AsSpan(34)));
        Assert.Equal(CopyLimits.MaxConcurrentCopies, d[36]);
        Assert.Equal(9, d[37]);
        Assert.Equal(new byte[] { 0x02, 0xE4 }, d[44..46]);
        Assert.Equal(10, (await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.OperatingParameters, allocation: 10))).DataIn.Length);
    }

    [Theory]
    [InlineData(0L, 0x00, 0U)]
    [InlineData(4294967295L, 0x00, 4294967295U)] // the most bytes that fit
    [InlineData(5L << 30, 0x01, 5U << 20)] // 5 GiB: kibibytes
    [InlineData(5L << 40, 0xF1, 5U << 20)] // 5 TiB: mebibytes
    [InlineData(long.MaxValue, 0xF3, (uint)(long.MaxValue >> 40))] // tebibytes
    public void The_transfer_count_uses_the_smallest_units_that_fit(long bytes, byte units, uint count)
        => Assert.Equal((units, count), ReceiveCopyResultsCommand.TransferCount(bytes));

    [Fact]
    public async Task Copy_status_is_held_per_nexus_and_list_identifier_when_the_list_asks()
    {
        var rig = await CopyRig.StartAsync(Filled(4096));
        var lun = rig.Luns[0];
        var unknown = await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.CopyStatus, 9));
        SenseAssert.Is(unknown, SenseKey.IllegalRequest, 0x24, 0x00);
        Assert.Equal(2, BinaryPrimitives.ReadUInt16BigEndian(unknown.SenseBytes.AsSpan(16)));

        var r = await rig.CopyAsync(0, new CopyList { ListId = 9 }.Naa(lun).Segment(0, 0, 100, 0, 1000).Segment(0, 0, 28, 0, 2000).Build());
        Assert.True(r.Good, r.ToString());
        var status = (await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.CopyStatus, 9))).DataIn;
        Assert.Equal(12, status.Length);
        Assert.Equal(8U, BinaryPrimitives.ReadUInt32BigEndian(status));
        Assert.Equal(0x01, status[4]); // completed without errors
        Assert.Equal(2, BinaryPrimitives.ReadUInt16BigEndian(status.AsSpan(5))); // segments processed
        Assert.Equal(0x00, status[7]); // bytes
        Assert.Equal(128U * 512, BinaryPrimitives.ReadUInt32BigEndian(status.AsSpan(8)));
        Assert.True((await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.CopyStatus, 9))).Good); // still held

        // Another nexus has its own list identifiers.
        var other = ScsiHarness.NewNexus();
        await rig.RunAsync(0, Cdbs.TestUnitReady(), nexus: other);
        SenseAssert.Is(await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.CopyStatus, 9), nexus: other), SenseKey.IllegalRequest, 0x24, 0x00);

        // LIST ID USAGE 10b: nothing is held afterwards, and the identifier may be reused at once.
        Assert.True((await rig.CopyAsync(0, new CopyList { ListId = 10, Usage = 2 }.Naa(lun).Segment(0, 0, 1, 0, 1).Build())).Good);
        SenseAssert.Is(await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.CopyStatus, 10)), SenseKey.IllegalRequest, 0x24, 0x00);
        Assert.True((await rig.CopyAsync(0, new CopyList { ListId = 10, Usage = 2 }.Naa(lun).Segment(0, 0, 1, 0, 1).Build())).Good);

        // A new copy with the same identifier replaces what was held.
        Assert.True((await rig.CopyAsync(0, new CopyList { ListId = 9 }.Naa(lun).Segment(0, 0, 1, 0, 1).Build())).Good);
        status = (await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.CopyStatus, 9))).DataIn;
        Assert.Equal((1, 512U), (BinaryPrimitives.ReadUInt16BigEndian(status.AsSpan(5)), BinaryPrimitives.ReadUInt32BigEndian(status.AsSpan(8))));

        // A logical unit reset discards held results.
        lun.Reset();
        await rig.RunAsync(0, Cdbs.TestUnitReady());
        SenseAssert.Is(await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.CopyStatus, 9)), SenseKey.IllegalRequest, 0x24, 0x00);
    }

    [Fact]
    public async Task A_failed_copy_holds_its_sense_for_failed_segment_details_until_read()
    {
        var rig = await CopyRig.StartAsync(Filled(1024));
        var r = await rig.CopyAsync(0, new CopyList { ListId = 3 }.Naa(rig.Luns[0]).Segment(0, 0, 4, 0, 0).Segment(0, 0, 8, 0, 1020).Build());
        SenseAssert.Is(r, SenseKey.CopyAborted, 0x00, 0x00);

        var status = (await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.CopyStatus, 3))).DataIn;
        Assert.Equal(0x02, status[4]); // completed with errors
        Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(status.AsSpan(5))); // checked before segment 0 ran

        // A short read leaves the details in place; a full one transfers and discards them.
        var partial = (await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.FailedSegmentDetails, 3, allocation: 8))).DataIn;
        Assert.Equal(8, partial.Length);
        Assert.Equal((uint)(56 + r.SenseBytes.Length), BinaryPrimitives.ReadUInt32BigEndian(partial));
        var details = (await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.FailedSegmentDetails, 3))).DataIn;
        Assert.Equal(60 + r.SenseBytes.Length, details.Length);
        Assert.Equal((byte)ScsiStatus.CheckCondition, details[56]);
        Assert.Equal(r.SenseBytes.Length, BinaryPrimitives.ReadUInt16BigEndian(details.AsSpan(58)));
        Assert.Equal(r.SenseBytes, details[60..]);
        var after = (await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.FailedSegmentDetails, 3))).DataIn;
        Assert.Equal(new byte[4], after);
        Assert.Equal(new byte[4], (await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.FailedSegmentDetails, 77))).DataIn);
    }

    [Fact]
    public async Task A_running_list_identifier_is_refused_and_its_progress_reported()
    {
        var source = Filled(1024, seed: 1);
        var rig = await CopyRig.StartAsync(Filled(1024, seed: 2), source);
        source.ReadGate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var list = new CopyList { ListId = 4 }.Naa(rig.Luns[0]).Naa(rig.Luns[1]).Segment(1, 0, 8, 0, 0).Build();
        var running = rig.CopyAsync(0, list);
        await source.ReadWaiting.Task.WaitAsync(TimeSpan.FromSeconds(10));

        SenseAssert.Is(await rig.CopyAsync(0, list), SenseKey.IllegalRequest, 0x00, 0x16); // OPERATION IN PROGRESS
        var status = (await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.CopyStatus, 4))).DataIn;
        Assert.Equal(0x00, status[4]); // in progress
        // Another nexus's list identifier 4 is another copy.
        var other = ScsiHarness.NewNexus();
        await rig.RunAsync(0, Cdbs.TestUnitReady(), nexus: other);
        Assert.True((await rig.CopyAsync(0, new CopyList { ListId = 4 }.Naa(rig.Luns[0]).Segment(0, 0, 1, 10, 11).Build(), other)).Good);

        var gate = source.ReadGate;
        source.ReadGate = null;
        gate.SetResult();
        Assert.True((await running.WaitAsync(TimeSpan.FromSeconds(10))).Good);
        Assert.Equal(source.Blocks(0, 8), rig.Devices[0].Blocks(0, 8));
        Assert.Equal(0x01, (await rig.RunAsync(0, CopyCdbs.ReceiveCopyResults(CopyCdbs.CopyStatus, 4))).DataIn[4]);
    }

    [Fact]
    public async Task A_step_on_another_lu_waits_behind_its_ordered_task()
    {
        var other = Filled(1024, seed: 3);
        var rig = await CopyRig.StartAsync(Filled(1024, seed: 2), other);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        other.ReadGate = gate;
        var read = rig.RunAsync(1, Cdbs.Read10(0, 1));
        await other.ReadWaiting.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var ordered = rig.RunAsync(1, Cdbs.TestUnitReady(), attribute: TaskAttribute.Ordered);
        var copy = rig.CopyAsync(0, new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1]).Segment(1, 0, 8, 100, 100).Build());

        await Task.Delay(300);
        Assert.False(ordered.IsCompleted);
        Assert.False(copy.IsCompleted); // its read of LU 1 queues behind the ORDERED task
        other.ReadGate = null;
        gate.SetResult();
        Assert.True((await read).Good);
        Assert.True((await ordered).Good);
        Assert.True((await copy.WaitAsync(TimeSpan.FromSeconds(10))).Good);
        Assert.Equal(other.Blocks(100, 8), rig.Devices[0].Blocks(100, 8));
    }

    [Fact]
    public async Task Two_serialized_luns_copying_into_each_other_never_deadlock()
    {
        var (a, b) = (Filled(1024, seed: 1, model: ThreadModel.SerializeRequests), Filled(1024, seed: 2, model: ThreadModel.SerializeRequests));
        var rig = await CopyRig.StartAsync(a, b);
        foreach (var lun in rig.Luns)
            lun.Copies.StepAdmissionTimeout = TimeSpan.FromMilliseconds(300);
        var toA = new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1]).Segment(1, 0, 64, 0, 512).Build();
        var toB = new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1]).Segment(0, 1, 64, 0, 512).Build();

        // Hold both LUs' only slot, queue each copy behind it, then let both copies in at once:
        // each holds its own LU and needs the other's.
        var (gateA, gateB) = (new TaskCompletionSource(), new TaskCompletionSource());
        (a.ReadGate, b.ReadGate) = (gateA, gateB);
        var holdA = rig.RunAsync(0, Cdbs.Read10(0, 1));
        var holdB = rig.RunAsync(1, Cdbs.Read10(0, 1));
        await Task.WhenAll(a.ReadWaiting.Task, b.ReadWaiting.Task).WaitAsync(TimeSpan.FromSeconds(10));
        var copyToA = rig.CopyAsync(0, toA);
        var copyToB = rig.CopyAsync(1, toB);
        (a.ReadGate, b.ReadGate) = (null, null);
        gateA.SetResult();
        gateB.SetResult();

        var results = await Task.WhenAll(holdA, holdB, copyToA, copyToB).WaitAsync(TimeSpan.FromSeconds(20));
        foreach (var r in results[2..])
            if (!r.Good)
                SenseAssert.Is(r, SenseKey.CopyAborted, 0x0D, 0x02); // gave up the other LU, and so released its own
        Assert.Equal(1, a.MaxInFlight); // the serializing devices never saw two requests at once
        Assert.Equal(1, b.MaxInFlight);

        // Alone, each copy goes through.
        Assert.True((await rig.CopyAsync(0, toA)).Good);
        Assert.Equal(b.Blocks(0, 64), a.Blocks(512, 64));
    }

    [Fact]
    public async Task Aborting_a_copy_that_waits_for_another_lu_leaves_that_lu_usable()
    {
        var other = Filled(1024, seed: 3);
        var rig = await CopyRig.StartAsync(Filled(1024, seed: 2), other);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        other.ReadGate = gate;
        var read = rig.RunAsync(1, Cdbs.Read10(0, 1));
        await other.ReadWaiting.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var ordered = rig.RunAsync(1, Cdbs.TestUnitReady(), attribute: TaskAttribute.Ordered);
        var copy = rig.CopyAsync(0, new CopyList().Naa(rig.Luns[0]).Naa(rig.Luns[1]).Segment(1, 0, 8, 0, 0).Build());
        await Task.Delay(200);

        Assert.Equal(1, rig.Luns[0].AbortTasks(t => t.CdbSpan[0] == 0x83));
        Assert.Equal(ScsiStatus.TaskAborted, (await copy.WaitAsync(TimeSpan.FromSeconds(10))).Status);
        other.ReadGate = null;
        gate.SetResult();
        Assert.True((await read).Good);
        Assert.True((await ordered).Good);
        Assert.True((await rig.RunAsync(1, Cdbs.Read10(0, 8))).Good);
        Assert.Equal(0, rig.Copies());
    }

    [Fact]
    public async Task Only_lus_the_initiator_may_reach_are_copy_targets()
    {
        var rig = await CopyRig.StartAsync(Filled(1024, seed: 1));
        var elsewhere = new MemoryDevice(1024);
        var lun = new ScsiLun(LunIdentity.FromName($"elsewhere-{Guid.NewGuid():N}", "test"), elsewhere, false, true, new Serilog.LoggerConfiguration().CreateLogger());
        var target = rig.Registry.GetOrAdd("iqn.2026-11.org.handler-runtime:elsewhere");
        Assert.True(target.TryMap(0, lun));
        var list = new CopyList().Naa(rig.Luns[0]).Naa(lun).Segment(0, 1, 4, 0, 0).Build();

        target.Access = new TargetAccess(["iqn.2026-11.org.handler-runtime:someone-else"], null);
        SenseAssert.Is(await rig.CopyAsync(0, list), SenseKey.CopyAborted, 0x0D, 0x02);
        target.Access = new TargetAccess([], new ChapCredentials("user", "secret12345678", null, null));
        SenseAssert.Is(await rig.CopyAsync(0, list), SenseKey.CopyAborted, 0x0D, 0x02);
        target.Access = new TargetAccess([rig.Nexus.InitiatorName], null);
        Assert.True((await rig.CopyAsync(0, list)).Good);
        Assert.Equal(rig.Devices[0].Blocks(0, 4), elsewhere.Blocks(0, 4));
    }
}

internal static class CopyRigExtensions
{
    /// <summary>Copies running on any LU of the rig (none should be left when every command has answered).</summary>
    public static int Copies(this CopyRig rig) => rig.Luns.Sum(l => l.Copies.Running);
}
