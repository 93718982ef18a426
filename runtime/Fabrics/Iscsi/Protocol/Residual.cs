namespace HandlerRuntime.Fabrics.Iscsi.Protocol;

/// <summary>
/// The residual of a finished command (RFC 7143 11.4.5): per direction, the SCSI-presented
/// data transfer length (SPDTL: what the command itself transfers, from its CDB or what it
/// produced) against the initiator's expected data transfer length (EDTL). SPDTL &gt; EDTL is
/// an overflow of SPDTL - EDTL bytes, SPDTL &lt; EDTL an underflow of EDTL - SPDTL bytes.
/// </summary>
/// <param name="Flags">The O/U (and for bidirectional commands o/u) bits of the response.</param>
/// <param name="Count">Residual Count: the one transfer's, or the write part's of a bidirectional command.</param>
/// <param name="BidirectionalReadCount">Bidirectional Read Residual Count: the read part's of a bidirectional command.</param>
public readonly record struct Residual(ResidualFlags Flags, uint Count, uint BidirectionalReadCount)
{
    /// <summary>
    /// The residual of a command the initiator sent with the R and W bits <paramref name="read"/>
    /// and <paramref name="write"/>.
    /// </summary>
    /// <param name="dataIn">Data-in bytes the command produced (its read SPDTL).</param>
    /// <param name="expectedIn">The initiator's expected data-in length: EDTL for a read, the
    /// Bidirectional Read Expected Data Transfer Length for a bidirectional command; 0 without R.</param>
    /// <param name="dataOut">Data-out bytes the CDB asks for (its write SPDTL), or a negative
    /// number when this target does not know the command's data-out length (no residual is claimed).</param>
    /// <param name="expectedOut">The initiator's EDTL for the data-out; 0 without W.</param>
    public static Residual Of(bool read, bool write, long dataIn, long expectedIn, long dataOut, long expectedOut)
    {
        if (!read)
            expectedIn = 0;
        if (!write)
            expectedOut = 0;
        if (read && write)
        {
            var (readFlags, readCount) = Compare(dataIn, expectedIn, ResidualFlags.BidirectionalReadOverflow, ResidualFlags.BidirectionalReadUnderflow);
            var (writeFlags, writeCount) = dataOut < 0 ? (ResidualFlags.None, 0u) : Compare(dataOut, expectedOut, ResidualFlags.Overflow, ResidualFlags.Underflow);
            return new(readFlags | writeFlags, writeCount, readCount);
        }
        // A unidirectional read, or data-in the initiator did not announce (EDTL for it is 0).
        if (read || dataIn > 0)
        {
            var (flags, count) = Compare(dataIn, expectedIn, ResidualFlags.Overflow, ResidualFlags.Underflow);
            return new(flags, count, 0);
        }
        if (write && dataOut >= 0)
        {
            var (flags, count) = Compare(dataOut, expectedOut, ResidualFlags.Overflow, ResidualFlags.Underflow);
            return new(flags, count, 0);
        }
        // No data either way (EDTL is 0 then: a command with EDTL > 0 and neither R nor W is rejected on receipt).
        return default;
    }

    private static (ResidualFlags, uint) Compare(long spdtl, long edtl, ResidualFlags overflow, ResidualFlags underflow)
        => spdtl > edtl ? (overflow, Clamp(spdtl - edtl))
         : spdtl < edtl ? (underflow, Clamp(edtl - spdtl))
         : (ResidualFlags.None, 0u);

    // A CDB may ask for more than 4 GiB (WRITE(16) of 2^32 blocks); the field is 32 bits.
    private static uint Clamp(long bytes) => (uint)Math.Min(uint.MaxValue, bytes);
}
