using HandlerRuntime.Scsi.Commands;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Copy;

/// <summary>
/// RECEIVE COPY RESULTS (84h, SPC-4 6.18) for the LID1 copies of this LU's copy manager:
/// COPY STATUS (00h), OPERATING PARAMETERS (03h) and FAILED SEGMENT DETAILS (04h). RECEIVE
/// DATA (01h) is not offered: no implemented segment type holds data for the initiator.
/// </summary>
internal static class ReceiveCopyResultsCommand
{
    private const int CopyStatusLength = 12;
    private const int FailedSegmentDetailsHeader = 60;

    /// <summary>RECEIVE COPY STATUS(LID1): progress or outcome of the copy with this list identifier, from this nexus.</summary>
    public static ValueTask CopyStatus(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        // SPC-4 6.18.2: a list identifier this copy manager knows nothing about (for this I_T nexus) is an invalid field.
        var operation = lun.Copies.Find(task.Nexus, cdb[2]) ?? throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2));
        var d = DataIn.Begin(task, CopyStatusLength);
        Cdb.Put32(d, 0, CopyStatusLength - 4);
        d[4] = (byte)operation.Status; // HDD (bit 7) stays 0: no held data exists to discard
        Cdb.Put16(d, 5, Math.Min(operation.SegmentsProcessed, ushort.MaxValue));
        var (units, count) = TransferCount(operation.BytesWritten);
        d[7] = units;
        Cdb.Put32(d, 8, count);
        return DataIn.End(task, CopyStatusLength, Cdb.U32(cdb, 10));
    }

    /// <summary>
    /// The bytes written so far in the smallest TRANSFER COUNT UNITS that hold the count in 32
    /// bits: 00h bytes, 01h kibibytes, then F1h-F5h for 2^20 to 2^60 (SPC-4 6.18.2).
    /// </summary>
    internal static (byte Units, uint Count) TransferCount(long bytes)
    {
        if (bytes <= uint.MaxValue)
            return (0x00, (uint)bytes);
        if (bytes >> 10 <= uint.MaxValue)
            return (0x01, (uint)(bytes >> 10));
        byte units = 0xF1;
        var shift = 20;
        while (bytes >> shift > uint.MaxValue)
        {
            units++;
            shift += 10;
        }
        return (units, (uint)(bytes >> shift));
    }

    /// <summary>RECEIVE COPY OPERATING PARAMETERS: the limits <see cref="CopyParameterList"/> enforces.</summary>
    public static ValueTask OperatingParameters(ScsiLun lun, ScsiTask task)
    {
        var types = CopyLimits.ImplementedDescriptorTypes;
        var length = 44 + types.Length;
        var d = DataIn.Begin(task, length);
        Cdb.Put32(d, 0, (uint)(length - 4));
        d[4] = 0x01; // SNLID: LIST ID USAGE 11b (no list identifier) is supported
        Cdb.Put16(d, 8, CopyLimits.MaxCscdDescriptors);
        Cdb.Put16(d, 10, CopyLimits.MaxSegmentDescriptors);
        Cdb.Put32(d, 12, (uint)CopyLimits.MaxDescriptorListLength);
        Cdb.Put32(d, 16, CopyLimits.MaxSegmentBytes);
        Cdb.Put32(d, 20, (uint)CopyLimits.MaxInlineDataLength);
        Cdb.Put32(d, 24, 0); // HELD DATA LIMIT: no segment type that holds data
        Cdb.Put32(d, 28, 0); // MAXIMUM STREAM DEVICE TRANSFER SIZE: no stream devices
        Cdb.Put16(d, 34, CopyLimits.MaxConcurrentCopies); // TOTAL CONCURRENT COPIES
        d[36] = CopyLimits.MaxConcurrentCopies;           // MAXIMUM CONCURRENT COPIES (list ID usage 00b or 10b)
        d[37] = 9; // DATA SEGMENT GRANULARITY, log2: every block device segment is whole 512-byte multiples
        d[38] = 0; // INLINE DATA GRANULARITY: no inline data
        d[39] = 0; // HELD DATA GRANULARITY: no held data
        d[43] = (byte)types.Length;
        types.CopyTo(d[44..]);
        return DataIn.End(task, length, Cdb.U32(task.CdbSpan, 10));
    }

    /// <summary>
    /// RECEIVE COPY FAILURE DETAILS(LID1): the status and sense a failed copy ended with. They
    /// are discarded once transferred in full or when the allocation length is zero; with
    /// none held, the AVAILABLE DATA field is zero and nothing follows it (SPC-4 6.18.5).
    /// </summary>
    public static ValueTask FailedSegmentDetails(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        var allocation = Cdb.U32(cdb, 10);
        var operation = lun.Copies.Find(task.Nexus, cdb[2]);
        var sense = operation is null ? null : lun.Copies.TakeFailedSense(operation, allocation);
        if (sense is null)
            return DataIn.End(task, DataIn.Begin(task, 4).Length, allocation);
        var length = FailedSegmentDetailsHeader + sense.Length;
        var d = DataIn.Begin(task, length);
        Cdb.Put32(d, 0, (uint)(length - 4));
        d[56] = (byte)operation!.FailedStatus; // COPY COMMAND STATUS
        Cdb.Put16(d, 58, sense.Length);
        sense.CopyTo(d[FailedSegmentDetailsHeader..]);
        return DataIn.End(task, length, allocation);
    }

    /// <summary>Total length of the FAILED SEGMENT DETAILS data for <paramref name="senseLength"/> bytes of sense.</summary>
    internal static int FailedSegmentDetailsLength(int senseLength) => FailedSegmentDetailsHeader + senseLength;
}
