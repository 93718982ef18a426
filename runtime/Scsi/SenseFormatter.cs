using System.Buffers.Binary;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi;

/// <summary>Writes sense data in fixed (70h) or descriptor (72h) format, SPC-4 4.5.</summary>
internal static class SenseFormatter
{
    public static int Write(in SenseData sense, bool descriptorFormat, Span<byte> dest)
        => descriptorFormat ? WriteDescriptor(sense, dest) : WriteFixed(sense, dest);

    private static int WriteFixed(in SenseData sense, Span<byte> d)
    {
        d[..18].Clear();
        var infoFits = sense.HasInformation && sense.Information <= uint.MaxValue;
        d[0] = (byte)(0x70 | (infoFits ? 0x80 : 0));
        d[2] = (byte)sense.Key;
        if (infoFits)
            BinaryPrimitives.WriteUInt32BigEndian(d[3..], (uint)sense.Information);
        d[7] = 10;
        if (sense.HasCommandSpecificInformation)
            BinaryPrimitives.WriteUInt32BigEndian(d[8..], (uint)Math.Min(sense.CommandSpecificInformation, uint.MaxValue));
        d[12] = sense.Asc;
        d[13] = sense.Ascq;
        if (sense.SenseKeySpecific != 0)
        {
            d[15] = (byte)(sense.SenseKeySpecific >> 16);
            d[16] = (byte)(sense.SenseKeySpecific >> 8);
            d[17] = (byte)sense.SenseKeySpecific;
        }
        return 18;
    }

    private static int WriteDescriptor(in SenseData sense, Span<byte> d)
    {
        d[..8].Clear();
        d[0] = 0x72;
        d[1] = (byte)sense.Key;
        d[2] = sense.Asc;
        d[3] = sense.Ascq;
        var n = 8;
        if (sense.HasInformation)
        {
            d.Slice(n, 12).Clear();
            d[n] = 0x00;
            d[n + 1] = 0x0A;
            d[n + 2] = 0x80;
            BinaryPrimitives.WriteUInt64BigEndian(d[(n + 4)..], sense.Information);
            n += 12;
        }
        if (sense.HasCommandSpecificInformation)
        {
            d.Slice(n, 12).Clear();
            d[n] = 0x01; // command-specific information descriptor
            d[n + 1] = 0x0A;
            BinaryPrimitives.WriteUInt64BigEndian(d[(n + 4)..], sense.CommandSpecificInformation);
            n += 12;
        }
        if (sense.SenseKeySpecific != 0)
        {
            d.Slice(n, 8).Clear();
            d[n] = 0x02;
            d[n + 1] = 0x06;
            d[n + 4] = (byte)(sense.SenseKeySpecific >> 16);
            d[n + 5] = (byte)(sense.SenseKeySpecific >> 8);
            d[n + 6] = (byte)sense.SenseKeySpecific;
            n += 8;
        }
        d[7] = (byte)(n - 8);
        return n;
    }
}
