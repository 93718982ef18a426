using System.Buffers.Binary;
using System.Numerics;

namespace HandlerRuntime.Fabrics.Iscsi.Protocol;

/// <summary>
/// CRC32C (Castagnoli), the iSCSI header and data digest (RFC 7143 13.1), eight bytes at a
/// time through the framework's hardware-accelerated <see cref="BitOperations.Crc32C(uint, ulong)"/>.
/// The digest goes on the wire least significant byte first.
/// </summary>
public static class Crc32C
{
    /// <summary>The finished digest of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(~0u, data);

    /// <summary>Continues a running (not yet inverted) CRC; start with ~0u and invert at the end.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (var b in data)
            crc = BitOperations.Crc32C(crc, b);
        return crc;
    }
}
