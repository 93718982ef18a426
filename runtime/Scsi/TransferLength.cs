namespace HandlerRuntime.Scsi;

/// <summary>
/// How many bytes of data-out a CDB asks the initiator to send (SPC/SBC: the transfer
/// length or parameter list length, in the units the command uses). Fabrics use it to
/// request only what the command needs and to report write residuals; the core still
/// checks what it receives.
/// </summary>
public static class TransferLength
{
    /// <summary>The data-out byte count the CDB implies, or null when this runtime does not know the command.</summary>
    public static long? DataOutBytes(ReadOnlySpan<byte> cdb, int blockSize)
    {
        if (cdb.IsEmpty)
            return null;
        long Blocks(uint n) => (long)n * blockSize;
        switch (cdb[0])
        {
            case 0x0A when cdb.Length >= 6: // WRITE(6): 0 means 256 blocks
                return Blocks(cdb[4] == 0 ? 256u : cdb[4]);
            case 0x2A or 0x2E when cdb.Length >= 10: // WRITE(10), WRITE AND VERIFY(10)
                return Blocks(Cdb.U16(cdb, 7));
            case 0xAA or 0xAE when cdb.Length >= 12: // WRITE(12), WRITE AND VERIFY(12)
                return Blocks(Cdb.U32(cdb, 6));
            case 0x8A or 0x8E or 0x8B or 0x9C when cdb.Length >= 16: // WRITE(16), WRITE AND VERIFY(16), ORWRITE(16), WRITE ATOMIC(16)
                return cdb[0] == 0x9C ? Blocks(Cdb.U16(cdb, 12)) : Blocks(Cdb.U32(cdb, 10));
            case 0x89 when cdb.Length >= 16: // COMPARE AND WRITE: verify data then write data
                return 2 * Blocks(cdb[13]);
            case 0x41 when cdb.Length >= 10: // WRITE SAME(10): one block
                return blockSize;
            case 0x93 when cdb.Length >= 16: // WRITE SAME(16): one block unless NDOB
                return (cdb[1] & 0x01) != 0 ? 0 : blockSize;
            case 0x2F when cdb.Length >= 10: // VERIFY(10/12/16): by BYTCHK
                return Verify(cdb, Cdb.U16(cdb, 7), blockSize);
            case 0xAF when cdb.Length >= 12:
                return Verify(cdb, Cdb.U32(cdb, 6), blockSize);
            case 0x8F when cdb.Length >= 16:
                return Verify(cdb, Cdb.U32(cdb, 10), blockSize);
            case 0x42 when cdb.Length >= 10: // UNMAP
                return Cdb.U16(cdb, 7);
            case 0x15 when cdb.Length >= 6: // MODE SELECT(6)
                return cdb[4];
            case 0x55 when cdb.Length >= 10: // MODE SELECT(10)
                return Cdb.U16(cdb, 7);
            case 0x16: // RESERVE(6)
                return 0;
            case 0x56 when cdb.Length >= 10: // RESERVE(10): third-party parameter list
                return Cdb.U16(cdb, 7);
            case 0x5F when cdb.Length >= 10: // PERSISTENT RESERVE OUT
                return Cdb.U32(cdb, 5);
            case 0x83 when cdb.Length >= 16: // EXTENDED COPY
                return Cdb.U32(cdb, 10);
            case 0xA4 when cdb.Length >= 12: // MAINTENANCE OUT (SET TARGET PORT GROUPS, ...)
                return Cdb.U32(cdb, 6);
            case 0x3B when cdb.Length >= 10: // WRITE BUFFER
                return Cdb.U24(cdb, 6);
            case 0x1D when cdb.Length >= 6: // SEND DIAGNOSTIC
                return Cdb.U16(cdb, 3);
            case 0x48 when cdb.Length >= 10: // SANITIZE
                return Cdb.U16(cdb, 7);
            default:
                return null;
        }
    }

    /// <summary>
    /// Shortens a WRITE or WRITE AND VERIFY CDB to <paramref name="bytes"/> of data when the
    /// initiator will send less than the CDB asks (FCP-4 9.4.2, option a: data beyond the
    /// expected length is neither requested nor written). False when the command is not one
    /// of these or <paramref name="bytes"/> is not whole blocks; the core then refuses the
    /// short data-out with INVALID FIELD IN INFORMATION UNIT.
    /// </summary>
    public static bool TryTruncateWrite(Span<byte> cdb, int blockSize, long bytes)
    {
        if (cdb.IsEmpty || blockSize <= 0 || bytes < 0 || bytes % blockSize != 0)
            return false;
        var blocks = bytes / blockSize;
        switch (cdb[0])
        {
            case 0x2A or 0x2E when cdb.Length >= 10 && blocks <= ushort.MaxValue:
                Cdb.Put16(cdb, 7, (int)blocks);
                return true;
            case 0xAA or 0xAE when cdb.Length >= 12 && blocks <= uint.MaxValue:
                Cdb.Put32(cdb, 6, (uint)blocks);
                return true;
            case 0x8A or 0x8E when cdb.Length >= 16 && blocks <= uint.MaxValue:
                Cdb.Put32(cdb, 10, (uint)blocks);
                return true;
            default:
                return false; // WRITE(6) cannot say fewer than 1 block (0 means 256)
        }
    }

    private static long? Verify(ReadOnlySpan<byte> cdb, uint blocks, int blockSize) => ((cdb[1] >> 1) & 3) switch
    {
        0 => 0,
        1 => (long)blocks * blockSize,
        3 => blocks == 0 ? 0 : blockSize,
        _ => null,
    };
}
