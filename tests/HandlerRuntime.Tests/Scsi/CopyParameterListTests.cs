using System.Buffers.Binary;
using HandlerRuntime.Scsi.Copy;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Scsi;

/// <summary>
/// EXTENDED COPY(LID1) parameter list parsing (SPC-4 6.4): well-formed lists and every kind of
/// malformed one, with the exact sense and, where SPC-4 asks for one, the field pointer into
/// the parameter list.
/// </summary>
public sealed class CopyParameterListTests
{
    private const ulong NaaA = 0x3123_4567_89AB_CDEFUL;

    private static CopyList OneToOne() => new CopyList().Naa(NaaA).Segment(0, 0, 8, 0, 100);

    private static ScsiException Refused(byte[] list) => Assert.Throws<ScsiException>(() => CopyParameterList.Parse(list));

    private static void RefusedWith(byte[] list, SenseKey key, byte asc, byte ascq, int? pointer = null, int? bit = null)
    {
        var e = Refused(list);
        SenseAssert.Is(e, key, asc, ascq);
        if (pointer is { } at)
        {
            var (flags, field) = SenseAssert.FieldPointer(e.Sense);
            Assert.Equal(0x80, flags & 0xC0); // SKSV, C/D = 0: the pointer is into the parameter list
            Assert.Equal(at, field);
            if (bit is { } b)
                Assert.Equal(0x08 | b, flags & 0x0F); // BPV and the bit
        }
    }

    private static void InvalidField(byte[] list, int pointer, int? bit = null)
        => RefusedWith(list, SenseKey.IllegalRequest, 0x26, 0x00, pointer, bit);

    [Fact]
    public void A_list_with_one_cscd_and_one_segment_parses_into_its_fields()
    {
        var list = new CopyList { ListId = 7 }.Naa(NaaA, blockSize: 4096, pad: true).Segment(0, 0xFFFF, 300, 12345, 1UL << 40, dc: true).Build();
        var p = CopyParameterList.Parse(list);
        Assert.Equal(7, p.ListId);
        Assert.Equal(ListIdUsage.Hold, p.Usage);
        var cscd = Assert.Single(p.Cscds);
        Assert.Equal((16, (byte)0, (byte)1, (byte)3, true, 4096), (cscd.Offset, cscd.PeripheralType, cscd.CodeSet, cscd.DesignatorType, cscd.Pad, cscd.DiskBlockLength));
        Assert.Equal(NaaA, BinaryPrimitives.ReadUInt64BigEndian(cscd.Designator.Span));
        var s = Assert.Single(p.Segments);
        Assert.Equal(new BlockSegment(0, 48, 0, 0xFFFF, true, false, 300, 12345, 1UL << 40), s);
    }

    [Fact]
    public void The_advertised_maximums_are_accepted()
    {
        var list = new CopyList();
        for (var i = 0; i < CopyLimits.MaxCscdDescriptors; i++)
            list.Naa(NaaA + (ulong)i);
        for (var i = 0; i < CopyLimits.MaxSegmentDescriptors; i++)
            list.Segment((ushort)(i % 64), (ushort)((i + 1) % 64), 1, (ulong)i, (ulong)i);
        var bytes = list.Build();
        Assert.Equal(16 + CopyLimits.MaxDescriptorListLength, bytes.Length);
        var p = CopyParameterList.Parse(bytes);
        Assert.Equal(CopyLimits.MaxCscdDescriptors, p.Cscds.Count);
        Assert.Equal(CopyLimits.MaxSegmentDescriptors, p.Segments.Count);
        Assert.Equal(CopyLimits.MaxSegmentDescriptors - 1, p.Segments[^1].Number);
    }

    [Fact]
    public void Lu_id_type_nul_and_relative_initiator_port_are_ignored()
    {
        var list = OneToOne().Build();
        list[16 + 1] |= 0xC0 | 0x20; // LU ID TYPE 11b, NUL
        list[16 + 2] = 0x12; list[16 + 3] = 0x34; // RELATIVE INITIATOR PORT IDENTIFIER
        list[1] |= 0x20 | 0x07; // STR, PRIORITY
        Assert.Single(CopyParameterList.Parse(list).Cscds);
    }

    [Fact]
    public void A_list_shorter_than_its_header_is_a_parameter_list_length_error()
        => RefusedWith(new byte[15], SenseKey.IllegalRequest, 0x1A, 0x00);

    [Fact]
    public void A_list_that_ends_inside_a_cscd_descriptor_is_a_parameter_list_length_error()
        => RefusedWith(OneToOne().Build()[..(16 + 32 - 1)], SenseKey.IllegalRequest, 0x1A, 0x00);

    [Fact]
    public void A_list_that_ends_inside_a_segment_descriptor_is_a_parameter_list_length_error()
        => RefusedWith(OneToOne().Build()[..(16 + 32 + 28 - 1)], SenseKey.IllegalRequest, 0x1A, 0x00);

    [Fact]
    public void Descriptor_lists_longer_than_the_maximum_are_a_length_error_before_their_counts_are_judged()
    {
        // libiscsi's DescrLimits: one CSCD too many and segments filling past the maximum length.
        var list = new CopyList();
        for (var i = 0; i <= CopyLimits.MaxCscdDescriptors; i++)
            list.Naa(NaaA);
        var room = CopyLimits.MaxDescriptorListLength - (CopyLimits.MaxCscdDescriptors + 1) * 32;
        for (var i = 0; i <= room / 28; i++)
            list.Segment(0, 0, 1, 0, 0);
        RefusedWith(list.Build(), SenseKey.IllegalRequest, 0x1A, 0x00);
    }

    [Fact]
    public void One_cscd_descriptor_too_many_is_too_many_target_descriptors()
    {
        var list = new CopyList();
        for (var i = 0; i <= CopyLimits.MaxCscdDescriptors; i++)
            list.Naa(NaaA);
        RefusedWith(list.Segment(0, 0, 1, 0, 0).Build(), SenseKey.IllegalRequest, 0x26, 0x06);
    }

    [Fact]
    public void One_segment_descriptor_too_many_is_too_many_segment_descriptors()
    {
        var list = new CopyList().Naa(NaaA);
        for (var i = 0; i <= CopyLimits.MaxSegmentDescriptors; i++)
            list.Segment(0, 0, 1, 0, 0);
        RefusedWith(list.Build(), SenseKey.IllegalRequest, 0x26, 0x08);
    }

    [Theory]
    [InlineData(0xE0)] // Fibre Channel N_Port_Name: a known length, not implemented
    [InlineData(0xEA)] // IPv6: 64 bytes, not implemented
    [InlineData(0x10)] // not a CSCD type at all: the list cannot even be walked
    public void An_unsupported_cscd_type_is_reported_with_a_pointer_to_it(byte type)
    {
        var descriptor = new byte[type == 0xEA ? 64 : 32];
        descriptor[0] = type;
        var list = new CopyList().Naa(NaaA).Cscd(descriptor).Segment(0, 0, 1, 0, 0);
        RefusedWith(list.Build(), SenseKey.IllegalRequest, 0x26, 0x07, pointer: list.CscdOffset(1));
    }

    [Fact]
    public void An_unsupported_segment_type_is_reported_with_a_pointer_to_it()
    {
        var streamToStream = new byte[20];
        streamToStream[0] = 0x03;
        streamToStream[3] = 0x10;
        var list = new CopyList().Naa(NaaA).Segment(0, 0, 1, 0, 0).RawSegment(streamToStream);
        RefusedWith(list.Build(), SenseKey.IllegalRequest, 0x26, 0x09, pointer: list.SegmentOffset(1));
    }

    [Fact]
    public void Inline_data_is_refused_as_more_than_the_maximum_inline_data_length()
    {
        var list = OneToOne();
        list.InlineLength = 4;
        RefusedWith(list.Build(), SenseKey.IllegalRequest, 0x26, 0x0B, pointer: 12);
    }

    [Fact]
    public void List_id_usage_01b_is_reserved()
    {
        var list = OneToOne().Build();
        list[1] = 0x08;
        InvalidField(list, 1, bit: 4);
    }

    [Fact]
    public void No_list_identifier_usage_needs_a_zero_list_identifier()
    {
        Assert.Equal(ListIdUsage.None, CopyParameterList.Parse(new CopyList { ListId = 0, Usage = 3 }.Naa(NaaA).Segment(0, 0, 1, 0, 0).Build()).Usage);
        InvalidField(new CopyList { ListId = 5, Usage = 3 }.Naa(NaaA).Segment(0, 0, 1, 0, 0).Build(), 0);
    }

    [Theory]
    [InlineData(1, 0x40, 6)] // header byte 1, bit 6
    [InlineData(5, 0x01, null)] // header bytes 4-7
    public void Reserved_header_fields_are_refused(int at, byte value, int? bit)
    {
        var list = OneToOne().Build();
        list[at] |= value;
        InvalidField(list, at, bit);
    }

    [Fact]
    public void A_cscd_list_length_that_splits_a_descriptor_is_an_invalid_field()
    {
        var list = new CopyList().Naa(NaaA).Naa(NaaA + 1).Segment(0, 1, 1, 0, 0).Build();
        BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(2), 40); // the second CSCD descriptor is cut after 8 bytes
        InvalidField(list, 2);
    }

    [Fact]
    public void A_segment_list_length_that_splits_a_descriptor_is_an_invalid_field()
    {
        var list = OneToOne().Build();
        BinaryPrimitives.WriteUInt32BigEndian(list.AsSpan(8), 27);
        InvalidField(list, 16 + 32 + 2);
        BinaryPrimitives.WriteUInt32BigEndian(list.AsSpan(8), 2);
        InvalidField(list, 8);
    }

    [Fact]
    public void A_block_to_block_segment_must_have_descriptor_length_18h()
    {
        var list = OneToOne().Build()[..^4];
        list[16 + 32 + 3] = 0x14;
        BinaryPrimitives.WriteUInt32BigEndian(list.AsSpan(8), 24);
        InvalidField(list, 16 + 32 + 2);
    }

    [Theory]
    [InlineData(5, 0x10, 4)] // ASSOCIATION 01b (target port): a CSCD names a logical unit
    [InlineData(6, 0x01, null)] // reserved byte of the designation descriptor
    [InlineData(7, 21, null)] // DESIGNATOR LENGTH beyond the 20 bytes available
    [InlineData(28, 0x01, 0)] // reserved bit of the block device parameters
    public void Malformed_identification_descriptors_are_refused(int field, byte value, int? bit)
    {
        var list = OneToOne().Build();
        if (field == 7)
            list[16 + field] = value;
        else
            list[16 + field] |= value;
        // ASSOCIATION is bits 5-4: a value of 01b has bit 4 set, pointed at as the field's highest bit, 5.
        InvalidField(list, 16 + field, bit is null ? null : field == 5 ? 5 : bit);
    }

    [Theory]
    [InlineData(1, 0x04, 2)] // reserved bit of byte 1 (DC is bit 1, CAT bit 0)
    [InlineData(8, 0x01, null)] // reserved bytes 8-9
    [InlineData(9, 0x80, null)]
    public void Reserved_segment_fields_are_refused(int field, byte value, int? bit)
    {
        var list = OneToOne().Build();
        list[16 + 32 + field] |= value;
        InvalidField(list, 16 + 32 + field, bit);
    }

    [Theory]
    [InlineData(4, 0x0800)]
    [InlineData(6, 0xFFFE)]
    public void Reserved_cscd_descriptor_ids_are_refused(int field, ushort id)
    {
        var list = OneToOne().Build();
        BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(16 + 32 + field), id);
        InvalidField(list, 16 + 32 + field);
    }

    [Fact]
    public void Ids_past_the_cscd_list_parse_and_are_judged_when_the_segment_runs()
    {
        var p = CopyParameterList.Parse(new CopyList().Naa(NaaA).Segment(0, 1, 8, 0, 0).Build());
        Assert.Equal(1, p.Segments[0].DestinationId);
    }
}
