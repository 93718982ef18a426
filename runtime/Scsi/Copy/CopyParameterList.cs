using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Copy;

/// <summary>The LIST ID USAGE field of an EXTENDED COPY(LID1) parameter list (SPC-4 6.4.1, table 108).</summary>
internal enum ListIdUsage : byte
{
    /// <summary>00b: the copy manager holds the results for RECEIVE COPY RESULTS; the list identifier is unique per I_T nexus.</summary>
    Hold = 0,
    /// <summary>10b: the list identifier is unique while the copy runs, but no results are held afterwards.</summary>
    Discard = 2,
    /// <summary>11b: no list identifier (it is zero); nothing is held (needs SNLID).</summary>
    None = 3,
}

/// <summary>
/// An identification descriptor CSCD descriptor (E4h, SPC-4 6.4.5.2): a logical unit named by
/// one of its VPD 83h designation descriptors, with the block device parameters (PAD, DISK
/// BLOCK LENGTH) when its peripheral device type is 00h.
/// </summary>
/// <param name="Offset">Where the descriptor starts in the parameter list (for segment pointers).</param>
/// <param name="PeripheralType">PERIPHERAL DEVICE TYPE the application client expects.</param>
/// <param name="CodeSet">CODE SET of the designator.</param>
/// <param name="DesignatorType">DESIGNATOR TYPE (3 = NAA, 1 = T10 vendor ID, ...).</param>
/// <param name="Designator">The DESIGNATOR bytes.</param>
/// <param name="Pad">PAD: inexact segments may be padded (destination) or stripped (source).</param>
/// <param name="DiskBlockLength">DISK BLOCK LENGTH the application client expects.</param>
internal readonly record struct CscdDescriptor(int Offset, byte PeripheralType, byte CodeSet, byte DesignatorType, ReadOnlyMemory<byte> Designator, bool Pad, int DiskBlockLength)
{
    /// <summary>Offset of DISK BLOCK LENGTH within a CSCD descriptor.</summary>
    public const int DiskBlockLengthField = 29;
}

/// <summary>A block device to block device segment descriptor (02h, SPC-4 6.4.6.5).</summary>
/// <param name="Number">The segment number (0-based), reported in COPY ABORTED sense.</param>
/// <param name="Offset">Where the descriptor starts in the parameter list.</param>
/// <param name="SourceId">SOURCE CSCD DESCRIPTOR ID.</param>
/// <param name="DestinationId">DESTINATION CSCD DESCRIPTOR ID.</param>
/// <param name="DestinationCount">DC: NUMBER OF BLOCKS counts destination blocks (else source blocks).</param>
/// <param name="Cat">CAT: residue of an inexact segment carries into the next one.</param>
/// <param name="Blocks">NUMBER OF BLOCKS.</param>
/// <param name="SourceLba">SOURCE LOGICAL BLOCK ADDRESS.</param>
/// <param name="DestinationLba">DESTINATION LOGICAL BLOCK ADDRESS.</param>
internal readonly record struct BlockSegment(int Number, int Offset, ushort SourceId, ushort DestinationId, bool DestinationCount, bool Cat, ushort Blocks, ulong SourceLba, ulong DestinationLba)
{
    // Field offsets within the descriptor, for segment pointers (SD=1).
    public const int SourceIdField = 4;
    public const int DestinationIdField = 6;
    public const int BlocksField = 10;
    public const int SourceLbaField = 12;
    public const int DestinationLbaField = 20;
}

/// <summary>
/// A validated EXTENDED COPY(LID1) parameter list (SPC-4 6.4.1): the 16-byte header, the CSCD
/// descriptors and the segment descriptors. <see cref="Parse"/> checks everything that can be
/// checked without touching a logical unit and throws the exact ILLEGAL REQUEST sense; what
/// depends on the logical units named (reachability, ranges, block sizes) is checked while
/// segments are processed and reported as COPY ABORTED (SPC-4 6.4.3).
/// </summary>
internal sealed class CopyParameterList
{
    public const int HeaderLength = 16;

    private CopyParameterList(byte listId, ListIdUsage usage, CscdDescriptor[] cscds, BlockSegment[] segments)
    {
        ListId = listId;
        Usage = usage;
        Cscds = cscds;
        Segments = segments;
    }

    /// <summary>LIST IDENTIFIER.</summary>
    public byte ListId { get; }

    /// <summary>LIST ID USAGE.</summary>
    public ListIdUsage Usage { get; }

    /// <summary>The CSCD descriptors, indexed by CSCD descriptor ID.</summary>
    public IReadOnlyList<CscdDescriptor> Cscds { get; }

    /// <summary>The segments, in processing order.</summary>
    public IReadOnlyList<BlockSegment> Segments { get; }

    /// <summary>
    /// Parses and validates a parameter list of at least one byte (a PARAMETER LIST LENGTH of
    /// zero is no copy at all and never reaches here). The checks run in the order that makes
    /// each error reported as the one SPC-4 names for it: truncation and the overall length
    /// first, then descriptor counts, then each descriptor.
    /// </summary>
    /// <exception cref="ScsiException">ILLEGAL REQUEST with the sense for the first problem found.</exception>
    public static CopyParameterList Parse(ReadOnlyMemory<byte> list)
    {
        var p = list.Span;
        // SPC-4 6.4.1: a parameter list that cannot even hold its header is truncated.
        if (p.Length < HeaderLength)
            throw new ScsiException(Sense.ParameterListLengthError);

        var listId = p[0];
        if ((p[1] & 0xC0) != 0)
            throw Invalid(1, Cdb.HighestBit(p[1] & 0xC0));
        var usage = (p[1] >> 3) & 0x03;
        if (usage == 0x01) // 01b is reserved
            throw Invalid(1, 4);
        if (usage == (int)ListIdUsage.None && listId != 0) // 11b means "no list identifier": it must be zero
            throw Invalid(0);
        // STR (bit 5) is a hint about striped sources and PRIORITY (bits 2-0) a relative order
        // among copies; neither changes what this copy manager does.
        for (var i = 4; i < 8; i++)
            if (p[i] != 0)
                throw Invalid(i);

        var cscdListLength = (int)Cdb.U16(p, 2);
        var segmentListLength = Cdb.U32(p, 8);
        var inlineLength = Cdb.U32(p, 12);
        // SPC-4 6.4.3.5: the descriptor lists together may not exceed MAXIMUM DESCRIPTOR LIST LENGTH.
        if (cscdListLength + (long)segmentListLength > CopyLimits.MaxDescriptorListLength)
            throw new ScsiException(Sense.ParameterListLengthError);
        if (inlineLength > CopyLimits.MaxInlineDataLength)
            throw new ScsiException(Sense.InlineDataLengthExceeded.WithFieldPointer(12, inCdb: false));
        // SPC-4 6.4.1: a parameter list length that truncates the lists is an error, and no data moves.
        if (HeaderLength + cscdListLength + (long)segmentListLength + inlineLength > p.Length)
            throw new ScsiException(Sense.ParameterListLengthError);

        var cscdStart = HeaderLength;
        var segmentStart = cscdStart + cscdListLength;
        var segmentEnd = segmentStart + (int)segmentListLength;

        // Count first (SPC-4 6.4.3.4, 6.4.3.5: too many descriptors is its own error), which
        // needs each descriptor's length: fixed by its type for CSCDs, in its header for segments.
        var cscdCount = 0;
        for (var at = cscdStart; at < segmentStart; cscdCount++)
        {
            var length = CscdLength(p[at]);
            if (length == 0)
                throw new ScsiException(Sense.UnsupportedTargetDescriptorType.WithFieldPointer(at, inCdb: false));
            if (at + length > segmentStart)
                throw Invalid(2); // CSCD DESCRIPTOR LIST LENGTH ends inside a descriptor
            at += length;
        }
        if (cscdCount > CopyLimits.MaxCscdDescriptors)
            throw new ScsiException(Sense.TooManyTargetDescriptors);

        var segmentCount = 0;
        for (var at = segmentStart; at < segmentEnd; segmentCount++)
        {
            if (at + 4 > segmentEnd)
                throw Invalid(8); // SEGMENT DESCRIPTOR LIST LENGTH ends inside a descriptor header
            var length = 4 + Cdb.U16(p, at + 2);
            if (at + length > segmentEnd)
                throw Invalid(at + 2);
            at += length;
        }
        if (segmentCount > CopyLimits.MaxSegmentDescriptors)
            throw new ScsiException(Sense.TooManySegmentDescriptors);

        var cscds = new CscdDescriptor[cscdCount];
        for (int i = 0, at = cscdStart; i < cscdCount; i++)
        {
            cscds[i] = ParseCscd(list, at);
            at += CscdLength(p[at]);
        }

        var segments = new BlockSegment[segmentCount];
        for (int i = 0, at = segmentStart; i < segmentCount; i++)
        {
            segments[i] = ParseSegment(p, i, at);
            at += 4 + Cdb.U16(p, at + 2);
        }
        return new CopyParameterList(listId, (ListIdUsage)usage, cscds, segments);
    }

    /// <summary>
    /// The length of a CSCD descriptor from its type code (SPC-4 6.4.5.1, table 112): the
    /// 32-byte types E0h-E9h and FEh, the 64-byte EAh and EBh; 0 for a code with no known
    /// length (the list cannot be walked past it).
    /// </summary>
    private static int CscdLength(byte typeCode) => typeCode switch
    {
        >= 0xE0 and <= 0xE9 or 0xFE => 32,
        0xEA or 0xEB => 64,
        _ => 0,
    };

    private static CscdDescriptor ParseCscd(ReadOnlyMemory<byte> list, int at)
    {
        var p = list.Span;
        if (p[at] != CopyLimits.IdentificationCscd)
            throw new ScsiException(Sense.UnsupportedTargetDescriptorType.WithFieldPointer(at, inCdb: false));
        // Byte 1: LU ID TYPE is ignored, since an identification descriptor has no LU IDENTIFIER
        // field to interpret (SPC-4 6.4.5.2); NUL is obsolete in SPC-4. RELATIVE INITIATOR PORT
        // IDENTIFIER (bytes 2-3) names the port to reach the CSCD through, and every LU here is
        // reached from inside the runtime, so any value is served.
        var peripheralType = (byte)(p[at + 1] & 0x1F);

        // Bytes 4-27: a designation descriptor as in VPD 83h (SPC-4 7.8.6.1).
        var codeSet = (byte)(p[at + 4] & 0x0F);
        var association = (p[at + 5] >> 4) & 0x03;
        if (association != 0) // the descriptor names a logical unit, so the association is "logical unit"
            throw Invalid(at + 5, 5);
        var designatorType = (byte)(p[at + 5] & 0x0F);
        if (p[at + 6] != 0)
            throw Invalid(at + 6);
        var designatorLength = p[at + 7];
        if (designatorLength > 20) // the designator field is bytes 8-27
            throw Invalid(at + 7);

        var pad = false;
        var blockLength = 0;
        if (peripheralType == 0x00)
        {
            // Block device type specific parameters (SPC-4 6.4.5.4): PAD and DISK BLOCK LENGTH.
            if ((p[at + 28] & ~0x04) != 0)
                throw Invalid(at + 28, Cdb.HighestBit(p[at + 28] & ~0x04));
            pad = (p[at + 28] & 0x04) != 0;
            blockLength = (int)Cdb.U24(p, at + CscdDescriptor.DiskBlockLengthField);
        }
        return new CscdDescriptor(at, peripheralType, codeSet, designatorType, list.Slice(at + 8, designatorLength), pad, blockLength);
    }

    private static BlockSegment ParseSegment(ReadOnlySpan<byte> p, int number, int at)
    {
        if (p[at] != CopyLimits.BlockToBlockSegment)
            throw new ScsiException(Sense.UnsupportedSegmentDescriptorType.WithFieldPointer(at, inCdb: false));
        if (Cdb.U16(p, at + 2) != CopyLimits.BlockToBlockSegmentLength - 4)
            throw Invalid(at + 2);
        if ((p[at + 1] & 0xFC) != 0)
            throw Invalid(at + 1, Cdb.HighestBit(p[at + 1] & 0xFC));
        if (p[at + 8] != 0 || p[at + 9] != 0)
            throw Invalid(p[at + 8] != 0 ? at + 8 : at + 9);
        var source = Cdb.U16(p, at + BlockSegment.SourceIdField);
        var destination = Cdb.U16(p, at + BlockSegment.DestinationIdField);
        // IDs past the end of the CSCD list are reported when the segment is processed
        // (COPY ABORTED); reserved ID values are a malformed list.
        if (source > CopyLimits.MaxCscdIndexId && source != CopyLimits.CopyManagerLuId)
            throw Invalid(at + BlockSegment.SourceIdField);
        if (destination > CopyLimits.MaxCscdIndexId && destination != CopyLimits.CopyManagerLuId)
            throw Invalid(at + BlockSegment.DestinationIdField);
        return new BlockSegment(number, at, source, destination,
            DestinationCount: (p[at + 1] & 0x02) != 0,
            Cat: (p[at + 1] & 0x01) != 0,
            Blocks: Cdb.U16(p, at + BlockSegment.BlocksField),
            SourceLba: Cdb.U64(p, at + BlockSegment.SourceLbaField),
            DestinationLba: Cdb.U64(p, at + BlockSegment.DestinationLbaField));
    }

    private static ScsiException Invalid(int at, int bit = -1)
        => new(Sense.InvalidFieldInParameterList.WithFieldPointer(at, bit, inCdb: false));

}
