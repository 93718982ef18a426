using HandlerRuntime.Buffers;
using HandlerRuntime.Fabrics.Tcmu;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Fabrics;

/// <summary>The TCMU ring logic against a byte array laid out like the kernel's mapping.</summary>
public sealed unsafe class TcmuRingTests
{
    private static readonly byte[] Read10 = Cdbs.Read10(8, 8);

    [Fact]
    public void A_command_entry_gives_its_id_cdb_and_iovecs()
    {
        using var image = new TcmuRingImage(4096, 64 << 10);
        var ring = image.Ring();
        Assert.Equal(TcmuRingImage.RingOffset + 4096, ring.DataOffset);
        Assert.True(ring.OutOfOrderCompletion && ring.ReadLenSupported);
        var (id, position) = image.AddCommand(Read10, (image.DataOffset, 2048), (image.DataOffset + 8192, 2048));

        Assert.True(ring.TryPeek(out var e));
        Assert.Equal((position, (uint)(112 + 16), EntryHeader.OpCmd, id), (e.Position, e.Length, e.Op, e.CmdId));
        var cdb = new byte[260];
        Assert.Equal(10, ring.CopyCdb(e, cdb));
        Assert.Equal(Read10, cdb[..10]);
        Assert.Equal((2, 0), ring.IovecCounts(e));
        Assert.Equal(new DataRun(image.DataOffset + 8192, 2048), ring.Iovec(e, 1));
        ring.Advance(e);
        Assert.False(ring.TryPeek(out _));
    }

    [Fact]
    public void More_than_four_iovecs_push_the_cdb_after_them()
    {
        using var image = new TcmuRingImage(4096, 64 << 10);
        var ring = image.Ring();
        var runs = Enumerable.Range(0, 6).Select(i => (image.DataOffset + i * 8192L, 4096)).ToArray();
        var cdb16 = Cdbs.Write16(1, 48);
        image.AddCommand(cdb16, runs);
        Assert.True(ring.TryPeek(out var e));
        Assert.Equal((uint)(48 + 6 * 16 + 16), e.Length);
        var into = new byte[260];
        Assert.Equal(16, ring.CopyCdb(e, into));
        Assert.Equal(cdb16, into[..16]);
        Assert.Equal((6, 0), ring.IovecCounts(e));
    }

    [Theory]
    [InlineData(0x00, 6)]   // TEST UNIT READY, group 0
    [InlineData(0x28, 10)]  // READ(10), group 1
    [InlineData(0x5A, 10)]  // MODE SENSE(10), group 2
    [InlineData(0x88, 16)]  // READ(16), group 4
    [InlineData(0xA8, 12)]  // READ(12), group 5
    [InlineData(0xA0, 12)]  // REPORT LUNS, group 5
    [InlineData(0xC0, 10)]  // vendor specific, group 6: the kernel copies 10
    public void The_cdb_length_comes_from_the_opcode_group(byte opcode, int length)
        => Assert.Equal(length, CommandRing.CdbLength(opcode, 0));

    [Fact]
    public void A_variable_length_cdb_is_8_plus_its_additional_length()
    {
        Assert.Equal(32, CommandRing.CdbLength(0x7F, 24));
        using var image = new TcmuRingImage(4096, 4096);
        var cdb = new byte[32];
        cdb[0] = 0x7F;
        cdb[7] = 24;
        cdb[31] = 0xAB;
        image.AddCommand(cdb);
        var ring = image.Ring();
        Assert.True(ring.TryPeek(out var e));
        var into = new byte[260];
        Assert.Equal(32, ring.CopyCdb(e, into));
        Assert.Equal(0xAB, into[31]);
    }

    [Fact]
    public void An_entry_that_does_not_fit_before_the_end_is_preceded_by_a_pad_and_the_ring_wraps()
    {
        using var image = new TcmuRingImage(1024, 4096);
        var ring = image.Ring();
        var ids = new List<ushort>();
        var pads = 0;
        for (var i = 0; i < 12; i++)
        {
            // consume and complete as we go, so the ring never fills; 12 entries of 120 bytes cross 1024 once
            var (id, _) = image.AddCommand(Cdbs.TestUnitReady());
            Assert.True(ring.TryPeek(out var e));
            if (e.Op == EntryHeader.OpPad)
            {
                Assert.Equal(1024u - e.Position, e.Length);
                pads++;
                ring.Advance(e);
                Assert.Equal(0u, ring.ReadIndex);
                Assert.True(ring.TryPeek(out e));
            }
            Assert.Equal(id, e.CmdId);
            ring.Advance(e);
            Assert.True(ring.Complete(id, 0, default, -1));
            ids.Add(id);
        }
        Assert.Equal(image.Head, ring.ReadIndex);
        Assert.Equal(image.Head, image.Tail); // the completions stepped over the PAD too
        Assert.Equal(1, pads);
        Assert.Equal(4u * (112 + 8), image.Head); // 8 entries of 120 bytes fit, the 9th wrapped after a 64-byte PAD
    }

    [Fact]
    public void Completions_in_any_order_are_written_at_cmd_tail_in_ring_order()
    {
        using var image = new TcmuRingImage(4096, 64 << 10);
        var ring = image.Ring();
        var a = image.AddCommand(Read10, (image.DataOffset, 4096));
        var b = image.AddCommand(Read10, (image.DataOffset + 4096, 4096));
        var c = image.AddCommand(Read10, (image.DataOffset + 8192, 4096));
        for (var i = 0; i < 3; i++)
        {
            Assert.True(ring.TryPeek(out var e));
            ring.Advance(e);
        }

        // c finishes first: its response takes a's entry, the oldest consumed one.
        var sense = Enumerable.Range(1, 18).Select(i => (byte)i).ToArray();
        Assert.True(ring.Complete(c.Id, (byte)ScsiStatus.CheckCondition, sense, -1));
        var r = image.Response(a.Position);
        Assert.Equal((c.Id, (byte)0, (byte)ScsiStatus.CheckCondition), (r.Id, r.UserFlags, r.Status));
        Assert.Equal(sense, r.Sense[..18]);
        Assert.All(r.Sense[18..], x => Assert.Equal(0, x));
        Assert.Equal(b.Position, image.Tail);

        // a finishes with a short read: READ_LEN in b's entry.
        Assert.True(ring.Complete(a.Id, 0, default, 512));
        r = image.Response(b.Position);
        Assert.Equal((a.Id, EntryHeader.UserFlagReadLen, (byte)0, 512u), (r.Id, r.UserFlags, r.Status, r.ReadLength));
        Assert.True(ring.Complete(b.Id, 0, default, -1));
        Assert.Equal(b.Id, image.Response(c.Position).Id);
        Assert.Equal(image.Head, image.Tail);

        // nothing consumed is left: a further completion is refused and writes nothing
        Assert.False(ring.Complete(9, 0, default, -1));
        Assert.Equal(image.Head, image.Tail);
    }

    [Fact]
    public void Tmr_and_unknown_entries_are_skipped_by_completions_and_unknown_ones_flagged()
    {
        using var image = new TcmuRingImage(4096, 4096);
        var ring = image.Ring();
        var tmr = image.AddTmr(TmrEntry.AbortTask, 7, 9);
        var unknown = image.AddUnknown(5);
        var cmd = image.AddCommand(Cdbs.TestUnitReady());

        Assert.True(ring.TryPeek(out var e));
        Assert.Equal((tmr, EntryHeader.OpTmr), (e.Position, e.Op));
        Assert.Equal(TmrEntry.AbortTask, ring.TmrType(e));
        Assert.Equal(new ushort[] { 7, 9 }, ring.TmrCommandIds(e).ToArray());
        ring.Advance(e);
        Assert.True(ring.TryPeek(out e));
        Assert.Equal((unknown, (byte)5), (e.Position, e.Op));
        ring.MarkUnknown(e);
        ring.Advance(e);
        Assert.Equal(EntryHeader.UserFlagUnknownOp, image.UserFlagsAt(unknown));
        Assert.True(ring.TryPeek(out e));
        ring.Advance(e);

        Assert.True(ring.Complete(cmd.Id, 0, default, -1));
        Assert.Equal(cmd.Id, image.Response(cmd.Position).Id);
        Assert.Equal(image.Head, image.Tail);
    }

    [Fact]
    public void The_read_index_starts_at_cmd_tail()
    {
        using var image = new TcmuRingImage(4096, 4096);
        image.AddCommand(Cdbs.TestUnitReady());
        var first = image.Ring();
        Assert.True(first.TryPeek(out var e));
        first.Advance(e);
        Assert.True(first.Complete(e.CmdId, 0, default, -1));
        var second = image.AddCommand(Cdbs.TestUnitReady());
        var reattached = image.Ring(); // a new process maps the same ring
        reattached.StartAtTail();
        Assert.True(reattached.TryPeek(out e));
        Assert.Equal(second.Id, e.CmdId);
    }

    [Fact]
    public void Entries_that_point_outside_the_mapping_are_refused()
    {
        using var image = new TcmuRingImage(4096, 8192);
        var ring = image.Ring();
        var bad = image.AddCommand(Read10, (image.DataOffset + 4096, 8192)); // runs past the end of the data area
        Assert.True(ring.TryPeek(out var e));
        Assert.Throws<RingCorruptException>(() => ring.Iovec(e, 0));
        image.Corrupt(bad.Position, CommandEntry.IovCount, 1000);
        Assert.Throws<RingCorruptException>(() => ring.IovecCounts(e));
        image.Corrupt(bad.Position, CommandEntry.CdbOffset, 8);
        Assert.Throws<RingCorruptException>(() => ring.CopyCdb(e, new byte[260]));
        image.Corrupt(bad.Position, EntryHeader.LenOp, 8000 | 1u);
        Assert.Throws<RingCorruptException>(() => ring.TryPeek(out _));
    }

    [Fact]
    public void A_mailbox_of_another_version_is_refused()
    {
        using var image = new TcmuRingImage(4096, 4096, version: 1);
        var e = Assert.Throws<RingCorruptException>(() => image.Ring());
        Assert.Contains("version 1", e.Message);
    }

    [Fact]
    public void A_window_over_the_data_area_is_read_and_written_in_place_by_a_lent_buffer()
    {
        using var image = new TcmuRingImage(4096, 8192);
        var window = new MappedWindow();
        var loan = BufferPool.PooledBuffer.CreateLoan();
        loan.Lend(window.Set(image.Base + image.DataOffset + 4096, 1024));
        Assert.True(loan.IsLoan);
        Assert.Equal(1024, loan.Capacity);
        loan.Span.Fill(0x5A);
        Assert.All(image.Bytes.Slice((int)image.DataOffset + 4096, 1024).ToArray(), b => Assert.Equal(0x5A, b));
        Assert.Equal(0, image.Bytes[(int)image.DataOffset + 4096 + 1024]);
        using (var pin = loan.Memory.Pin())
            Assert.True(pin.Pointer == image.Base + image.DataOffset + 4096);
        Assert.Throws<InvalidOperationException>(() => loan.Array);
        loan.Dispose();
        Assert.Throws<InvalidOperationException>(loan.Dispose);
    }
}

/// <summary>The data area used in place: the core reads into memory the fabric lends.</summary>
public sealed class TcmuDataAreaTests
{
    [Fact]
    public async Task A_read_runs_into_the_data_in_buffer_the_fabric_lends_and_a_larger_answer_gets_its_own()
    {
        var device = await new HandlerRuntime.Handlers.Ram.RamHandler().OpenAsync(OpenContexts.For("@", 1 << 20, 512, lunName: "ram"), CancellationToken.None);
        await using var harness = new ScsiHarness(device, "ram", "ram");
        await harness.ClearUnitAttentionAsync();
        var pattern = Enumerable.Range(0, 4096).Select(i => (byte)(i * 7)).ToArray();
        Assert.True((await harness.RunAsync(Cdbs.Write10(4, 8), pattern)).Good);

        using var image = new TcmuRingImage(4096, 64 << 10);
        var window = new MappedWindow();
        var loan = BufferPool.PooledBuffer.CreateLoan();
        var task = new ScsiTask { Nexus = harness.Nexus, ExpectedDataInLength = 4096 };
        loan.Lend(image.Window(window, image.DataOffset, 4096));
        task.ProvideDataIn(loan);
        task.SetCdb(Cdbs.Read10(4, 8));
        await harness.Target.ExecuteAsync(task);
        Assert.Equal(ScsiStatus.Good, task.Status);
        Assert.Same(loan, task.DataInBuffer); // produced in place: nothing to copy
        Assert.Equal(pattern, image.Bytes.Slice((int)image.DataOffset, 4096).ToArray());
        task.Reset(); // ends the loan
        Assert.Null(task.DataInBuffer);

        // 16 bytes lent, INQUIRY builds 36 before truncating to its allocation length: the core rents its own.
        loan.Lend(image.Window(window, image.DataOffset, 16));
        task.Nexus = harness.Nexus;
        task.ExpectedDataInLength = 16;
        task.ProvideDataIn(loan);
        task.SetCdb(Cdbs.Inquiry(alloc: 16));
        await harness.Target.ExecuteAsync(task);
        Assert.NotSame(loan, task.DataInBuffer);
        Assert.Equal(16, task.DataInLength);
        task.Reset();
    }
}
