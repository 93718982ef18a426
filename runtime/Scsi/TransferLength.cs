namespace HandlerRuntime.Scsi;

/// <summary>
/// How many bytes of data-out a CDB asks the initiator to send (SPC/SBC: the transfer
/// length or parameter list length, in the units the command uses). Fabrics use it to
/// request only what the command needs and to report write residuals; the core still
/// checks what it receives. Where the length sits is the command table's knowledge
/// (<see cref="CommandInfo.Range"/> and <see cref="CommandInfo.DataOut"/>), read here.
/// </summary>
public static class TransferLength
{
    /// <summary>The data-out byte count the CDB implies, or null when this runtime does not know the command or it takes no data-out.</summary>
    public static long? DataOutBytes(ReadOnlySpan<byte> cdb, int blockSize)
    {
        if (CommandTable.Find(cdb) is not { } info || cdb.Length < info.Usage.Length)
            return null;
        var (_, blocks) = Cdb.Range(cdb, info.Range);
        if (blocks == 0 && (info.Flags & CommandFlags.ZeroMeans256) != 0)
            blocks = 256;
        var transfer = (long)blocks * blockSize;
        var dataOut = info.DataOut;
        return dataOut.Rule switch
        {
            DataOutRule.None => 0,
            DataOutRule.Blocks => transfer,
            DataOutRule.TwiceBlocks => 2 * transfer,
            DataOutRule.OneBlock => blockSize,
            DataOutRule.OneBlockUnlessNdob => (cdb[1] & 0x01) != 0 ? 0 : blockSize,
            DataOutRule.ByteCheck => ((cdb[1] >> 1) & 3) switch
            {
                0 => 0,
                1 => transfer,
                3 => blocks == 0 ? 0 : blockSize,
                _ => null,
            },
            DataOutRule.ParameterList => dataOut.LengthWidth switch
            {
                1 => cdb[dataOut.LengthAt],
                2 => Cdb.U16(cdb, dataOut.LengthAt),
                3 => Cdb.U24(cdb, dataOut.LengthAt),
                _ => Cdb.U32(cdb, dataOut.LengthAt),
            },
            _ => null,
        };
    }

    /// <summary>
    /// Shortens a WRITE or WRITE AND VERIFY CDB to <paramref name="bytes"/> of data when the
    /// initiator will send less than the CDB asks (FCP-4 9.4.2, option a: data beyond the
    /// expected length is neither requested nor written). False when the command is not a
    /// plain block write (an atomic one — COMPARE AND WRITE, ORWRITE, WRITE ATOMIC — is never
    /// cut short), its length cannot say <paramref name="bytes"/> (WRITE(6): 0 means 256), or
    /// <paramref name="bytes"/> is not whole blocks; the core then refuses the short data-out
    /// with INVALID FIELD IN INFORMATION UNIT.
    /// </summary>
    public static bool TryTruncateWrite(Span<byte> cdb, int blockSize, long bytes)
    {
        if (blockSize <= 0 || bytes < 0 || bytes % blockSize != 0)
            return false;
        if (CommandTable.Find(cdb) is not { } info || cdb.Length < info.Usage.Length
            || info.DataOut.Rule != DataOutRule.Blocks || (info.Flags & CommandFlags.Exclusive) != 0)
            return false;
        var blocks = bytes / blockSize;
        switch (info.Range)
        {
            case RangeLayout.Cdb10 when blocks <= ushort.MaxValue:
                Cdb.Put16(cdb, 7, (int)blocks);
                return true;
            case RangeLayout.Cdb12 when blocks <= uint.MaxValue:
                Cdb.Put32(cdb, 6, (uint)blocks);
                return true;
            case RangeLayout.Cdb16 when blocks <= uint.MaxValue:
                Cdb.Put32(cdb, 10, (uint)blocks);
                return true;
            default:
                return false;
        }
    }
}
