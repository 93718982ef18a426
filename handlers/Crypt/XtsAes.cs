using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;

namespace HandlerRuntime.Handlers.Crypt;

/// <summary>
/// XTS-AES (IEEE 1619-2007, NIST SP 800-38E) on whole data units of a multiple of 16 bytes
/// (no ciphertext stealing: a logical block is 512 to 4096 bytes). The key is Key1 | Key2, each
/// 128 or 256 bits: Key1 enciphers the data, Key2 the tweak. For data unit i the tweak is
/// T = AES(Key2, i as a 128-bit little-endian number); the j-th 16-byte block of the unit is
/// C = AES(Key1, P xor T·α^j) xor T·α^j, where ·α multiplies in GF(2^128) with the polynomial
/// x^128 + x^7 + x^2 + x + 1 (a left shift of the little-endian 128-bit value, 0x87 folded in on carry).
/// <para>
/// One call does a whole run of units with two ECB passes of the framework's AES (one over the
/// tweaks, one over the data), which are thread-safe and keep their native contexts cached.
/// </para>
/// </summary>
internal sealed class XtsAes : IDisposable
{
    private const int BlockBytes = 16;
    private readonly Aes data = Aes.Create();
    private readonly Aes tweak = Aes.Create();

    /// <param name="key">Key1 | Key2: 32 bytes (XTS-AES-128) or 64 (XTS-AES-256).</param>
    public XtsAes(ReadOnlySpan<byte> key)
    {
        if (key.Length is not (32 or 64))
            throw new ArgumentException("an XTS-AES key is 32 or 64 bytes", nameof(key));
        var half = key.Length / 2;
        var key1 = key[..half].ToArray();
        var key2 = key[half..].ToArray();
        data.Key = key1; // the setter keeps its own copy
        tweak.Key = key2;
        CryptographicOperations.ZeroMemory(key1);
        CryptographicOperations.ZeroMemory(key2);
    }

    /// <summary>Enciphers <paramref name="source"/>, units <paramref name="firstUnit"/>, ... of <paramref name="unitBytes"/>, into <paramref name="destination"/> (may be the same span).</summary>
    public void Encrypt(ulong firstUnit, int unitBytes, ReadOnlySpan<byte> source, Span<byte> destination) => Transform(true, firstUnit, unitBytes, source, destination);

    /// <summary>Deciphers, as <see cref="Encrypt"/> enciphers.</summary>
    public void Decrypt(ulong firstUnit, int unitBytes, ReadOnlySpan<byte> source, Span<byte> destination) => Transform(false, firstUnit, unitBytes, source, destination);

    private void Transform(bool encrypt, ulong firstUnit, int unitBytes, ReadOnlySpan<byte> source, Span<byte> destination)
    {
        if (unitBytes <= 0 || unitBytes % BlockBytes != 0 || source.Length % unitBytes != 0 || destination.Length < source.Length)
            throw new ArgumentException($"XTS works on whole {unitBytes}-byte units of 16-byte blocks, not {source.Length} bytes");
        var units = source.Length / unitBytes;
        var tweakBytes = units * BlockBytes;
        byte[]? rented = null;
        var tweaks = tweakBytes <= 1024 ? stackalloc byte[tweakBytes] : (rented = ArrayPool<byte>.Shared.Rent(tweakBytes)).AsSpan(0, tweakBytes);
        try
        {
            for (var u = 0; u < units; u++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(tweaks[(u * BlockBytes)..], firstUnit + (ulong)u);
                BinaryPrimitives.WriteUInt64LittleEndian(tweaks[(u * BlockBytes + 8)..], 0);
            }
            tweak.EncryptEcb(tweaks, tweaks, PaddingMode.None);
            destination = destination[..source.Length];
            XorTweaks(source, destination, tweaks, unitBytes);
            if (encrypt)
                data.EncryptEcb(destination, destination, PaddingMode.None);
            else
                data.DecryptEcb(destination, destination, PaddingMode.None);
            XorTweaks(destination, destination, tweaks, unitBytes);
        }
        finally
        {
            if (rented is not null)
                ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>destination = source xor T·α^j, block by block, each unit from its own T.</summary>
    private static void XorTweaks(ReadOnlySpan<byte> source, Span<byte> destination, ReadOnlySpan<byte> tweaks, int unitBytes)
    {
        for (int unit = 0, at = 0; at < source.Length; unit++)
        {
            var lo = BinaryPrimitives.ReadUInt64LittleEndian(tweaks[(unit * BlockBytes)..]);
            var hi = BinaryPrimitives.ReadUInt64LittleEndian(tweaks[(unit * BlockBytes + 8)..]);
            for (var end = at + unitBytes; at < end; at += BlockBytes)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(destination[at..], BinaryPrimitives.ReadUInt64LittleEndian(source[at..]) ^ lo);
                BinaryPrimitives.WriteUInt64LittleEndian(destination[(at + 8)..], BinaryPrimitives.ReadUInt64LittleEndian(source[(at + 8)..]) ^ hi);
                var carry = hi >> 63;
                hi = (hi << 1) | (lo >> 63);
                lo = (lo << 1) ^ (0x87 * carry);
            }
        }
    }

    public void Dispose()
    {
        data.Dispose();
        tweak.Dispose();
    }
}
