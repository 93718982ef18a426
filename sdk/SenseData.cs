namespace HandlerRuntime.Sdk;

/// <summary>
/// The content of sense data, independent of its wire format (fixed or descriptor,
/// chosen by the runtime from the control mode page). A value type: building one
/// allocates nothing.
/// </summary>
public readonly record struct SenseData
{
    /// <summary>Creates sense data from a key and additional sense code and qualifier.</summary>
    public SenseData(SenseKey key, byte asc, byte ascq)
    {
        Key = key;
        Asc = asc;
        Ascq = ascq;
    }

    /// <summary>The sense key.</summary>
    public SenseKey Key { get; init; }

    /// <summary>Additional sense code.</summary>
    public byte Asc { get; init; }

    /// <summary>Additional sense code qualifier.</summary>
    public byte Ascq { get; init; }

    /// <summary>The INFORMATION field (for example the miscompare offset), when <see cref="HasInformation"/>.</summary>
    public ulong Information { get; init; }

    /// <summary>Whether <see cref="Information"/> is valid.</summary>
    public bool HasInformation { get; init; }

    /// <summary>
    /// Sense-key specific bytes 15-17 of fixed sense (field pointer or progress indication),
    /// including the SKSV bit; 0 when absent.
    /// </summary>
    public uint SenseKeySpecific { get; init; }

    /// <summary>Adds an INFORMATION field.</summary>
    public SenseData WithInformation(ulong information) => this with { Information = information, HasInformation = true };

    /// <summary>Adds a field pointer: the CDB (or parameter list) byte and, optionally, bit in error.</summary>
    /// <param name="byteIndex">Byte in error.</param>
    /// <param name="bit">Bit in error (0-7), or -1 when not known.</param>
    /// <param name="inCdb">True for the CDB, false for the parameter list.</param>
    public SenseData WithFieldPointer(int byteIndex, int bit = -1, bool inCdb = true)
    {
        uint sks = 0x800000u | (inCdb ? 0x400000u : 0) | (uint)(ushort)byteIndex;
        if (bit >= 0)
            sks |= 0x080000u | ((uint)(bit & 7) << 16);
        return this with { SenseKeySpecific = sks };
    }

    /// <summary>The COMMAND-SPECIFIC INFORMATION field (EXTENDED COPY: the number of the segment that failed), when <see cref="HasCommandSpecificInformation"/>.</summary>
    public ulong CommandSpecificInformation { get; init; }

    /// <summary>Whether <see cref="CommandSpecificInformation"/> is valid.</summary>
    public bool HasCommandSpecificInformation { get; init; }

    /// <summary>Adds a COMMAND-SPECIFIC INFORMATION field.</summary>
    public SenseData WithCommandSpecificInformation(ulong information) => this with { CommandSpecificInformation = information, HasCommandSpecificInformation = true };

    /// <summary>
    /// Adds a segment pointer (SPC-4 4.5.2.4.6), the sense-key specific form that COPY ABORTED
    /// sense of EXTENDED COPY carries: the byte (and optionally bit) in error, counted from the
    /// start of the failing segment descriptor when <paramref name="inSegmentDescriptor"/>, else
    /// from the start of the parameter list.
    /// </summary>
    /// <param name="byteIndex">Byte in error.</param>
    /// <param name="inSegmentDescriptor">SD bit: true when <paramref name="byteIndex"/> counts from the segment descriptor.</param>
    /// <param name="bit">Bit in error (0-7), or -1 when not known.</param>
    public SenseData WithSegmentPointer(int byteIndex, bool inSegmentDescriptor, int bit = -1)
    {
        uint sks = 0x800000u | (inSegmentDescriptor ? 0x200000u : 0) | (uint)(ushort)byteIndex;
        if (bit >= 0)
            sks |= 0x080000u | ((uint)(bit & 7) << 16);
        return this with { SenseKeySpecific = sks };
    }

    /// <summary>Adds a progress indication (0-65535 of 65536), as NOT READY sense carries during format.</summary>
    public SenseData WithProgress(ushort progress) => this with { SenseKeySpecific = 0x800000u | progress };

    /// <inheritdoc />
    public override string ToString()
        => $"{Key} {Asc:X2}h/{Ascq:X2}h" + (HasInformation ? $" info={Information}" : "");
}
