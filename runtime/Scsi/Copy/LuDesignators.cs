namespace HandlerRuntime.Scsi.Copy;

/// <summary>
/// Matches a CSCD identification descriptor against the logical-unit designators an LU
/// reports in VPD 83h (InquiryCommand.DeviceIdentification). Its NAA designator (binary,
/// NAA 3h, 8 bytes) is the one that can name it: its T10 vendor ID designator (vendor id and
/// a 24-character serial) is 32 bytes, longer than the 20-byte DESIGNATOR field of a CSCD
/// descriptor, and designators of other types (EUI-64, SCSI name string, ...) name no LU here.
/// </summary>
internal static class LuDesignators
{
    private const byte CodeSetBinary = 0x1;
    private const byte TypeNaa = 0x3;

    public static bool Designates(ScsiLun lun, in CscdDescriptor cscd)
        => cscd.DesignatorType == TypeNaa && cscd.CodeSet == CodeSetBinary && cscd.Designator.Length == 8
           && Cdb.U64(cscd.Designator.Span, 0) == lun.Identity.Naa;
}
