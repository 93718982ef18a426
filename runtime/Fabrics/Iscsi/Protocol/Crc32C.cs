using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace HandlerRuntime.Fabrics.Iscsi.Protocol;

/// <summary>
/// CRC32C (Castagnoli), the iSCSI header and data digest (RFC 7143 13.1): SSE4.2's crc32
/// instruction eight bytes at a time where the CPU has it, a slicing table otherwise.
/// The digest goes on the wire least significant byte first.
/// </summary>
public static class Crc32C
{
    private const uint Polynomial = 0x82F63B78; // reflected 0x1EDC6F41
    private static readonly uint[] Table = BuildTable();

    /// <summary>The finished digest of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(~0u, data);

    /// <summary>Continues a running (not yet inverted) CRC; start with ~0u and invert at the end.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        if (Sse42.X64.IsSupported)
            return AppendSse42X64(crc, data);
        if (Sse42.IsSupported)
            return AppendSse42(crc, data);
        return AppendTable(crc, data);
    }

    internal static uint AppendTable(uint crc, ReadOnlySpan<byte> data)
    {
        var table = Table;
        foreach (var b in data)
            crc = table[(byte)(crc ^ b)] ^ (crc >> 8);
        return crc;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static uint AppendSse42X64(uint crc, ReadOnlySpan<byte> data)
    {
        ulong c = crc;
        ref var p = ref MemoryMarshal.GetReference(data);
        var n = data.Length;
        var i = 0;
        for (; i + 8 <= n; i += 8)
            c = Sse42.X64.Crc32(c, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i)));
        var r = (uint)c;
        for (; i < n; i++)
            r = Sse42.Crc32(r, Unsafe.Add(ref p, i));
        return r;
    }

    private static uint AppendSse42(uint crc, ReadOnlySpan<byte> data)
    {
        ref var p = ref MemoryMarshal.GetReference(data);
        var n = data.Length;
        var i = 0;
        for (; i + 4 <= n; i += 4)
            crc = Sse42.Crc32(crc, Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref p, i)));
        for (; i < n; i++)
            crc = Sse42.Crc32(crc, Unsafe.Add(ref p, i));
        return crc;
    }

    private static uint[] BuildTable()
    {
        var t = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            var c = i;
            for (var k = 0; k < 8; k++)
                c = (c & 1) != 0 ? (c >> 1) ^ Polynomial : c >> 1;
            t[i] = c;
        }
        return t;
    }
}
