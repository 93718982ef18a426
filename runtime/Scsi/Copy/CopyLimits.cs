namespace HandlerRuntime.Scsi.Copy;

/// <summary>
/// What this copy manager supports. RECEIVE COPY RESULTS with OPERATING PARAMETERS reports
/// exactly these values (SPC-4 6.18.4), and the EXTENDED COPY parameter list parser enforces
/// them, so an initiator that sizes its lists from the report is never refused.
/// </summary>
internal static class CopyLimits
{
    /// <summary>CSCD (target) descriptors in one parameter list.</summary>
    public const int MaxCscdDescriptors = 64;

    /// <summary>Segment descriptors in one parameter list.</summary>
    public const int MaxSegmentDescriptors = 256;

    /// <summary>Length of the identification descriptor CSCD descriptor (E4h), and of every 32-byte CSCD type.</summary>
    public const int CscdDescriptorLength = 32;

    /// <summary>Length of a block device to block device segment descriptor (02h).</summary>
    public const int BlockToBlockSegmentLength = 28;

    /// <summary>
    /// The combined length of the CSCD and segment descriptor lists: room for the maximum
    /// number of each, and no more (a list longer than this is a PARAMETER LIST LENGTH ERROR,
    /// SPC-4 6.4.3.5).
    /// </summary>
    public const int MaxDescriptorListLength = MaxCscdDescriptors * CscdDescriptorLength + MaxSegmentDescriptors * BlockToBlockSegmentLength;

    /// <summary>
    /// The most one segment can write: the 16-bit NUMBER OF BLOCKS of a 02h segment times the
    /// largest logical block this runtime serves (4096 bytes). The copy is done in bounded
    /// chunks, so any segment the descriptor can express is accepted.
    /// </summary>
    public const uint MaxSegmentBytes = ushort.MaxValue * 4096u;

    /// <summary>Inline data (segment type 04h) is not supported.</summary>
    public const int MaxInlineDataLength = 0;

    /// <summary>EXTENDED COPY commands one copy manager (LU) runs at once; each holds one chunk buffer.</summary>
    public const int MaxConcurrentCopies = 32;

    /// <summary>Completed copies whose results one copy manager keeps for RECEIVE COPY RESULTS; the oldest is discarded first.</summary>
    public const int MaxHeldResults = 256;

    /// <summary>Bytes read and written at a time (pooled buffer); smaller when a device's maximum transfer is smaller.</summary>
    public const int ChunkBytes = 1 << 20;

    /// <summary>
    /// How long one chunk waits to enter the task set of another LU before the copy ends with
    /// COPY TARGET DEVICE NOT REACHABLE. Two copies that each hold their own LU and wait for
    /// the other's (serializing devices, ORDERED tasks, a quiesce) would otherwise wait forever.
    /// </summary>
    public static readonly TimeSpan ForeignAdmissionTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Descriptor type codes implemented, ascending: block to block segments and identification CSCDs.</summary>
    public static ReadOnlySpan<byte> ImplementedDescriptorTypes => [0x02, 0xE4];

    /// <summary>The identification descriptor CSCD type code (SPC-4 6.4.5.2).</summary>
    public const byte IdentificationCscd = 0xE4;

    /// <summary>The block device to block device segment type code (SPC-4 6.4.6.5).</summary>
    public const byte BlockToBlockSegment = 0x02;

    /// <summary>
    /// The CSCD descriptor ID that names the logical unit holding the copy manager itself
    /// (SPC-4 6.4.5.1): usable without any CSCD descriptor.
    /// </summary>
    public const ushort CopyManagerLuId = 0xFFFF;

    /// <summary>Highest CSCD descriptor ID that indexes the CSCD descriptor list; 0800h-FFFEh are reserved.</summary>
    public const ushort MaxCscdIndexId = 0x07FF;
}
