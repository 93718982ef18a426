using System.Security.Cryptography;
using System.Text;

namespace HandlerRuntime.Scsi;

/// <summary>
/// The names a LUN shows initiators: a unit serial number (VPD 80h) and an NAA
/// locally-assigned identifier (VPD 83h), both derived from the LUN's name so that they
/// stay the same across restarts and hosts, and the product id from the handler.
/// </summary>
public sealed record LunIdentity(string Name, string Serial, ulong Naa, string ProductId)
{
    public const string VendorId = "HRT";
    public const string Revision = "0001";

    public static LunIdentity FromName(string name, string subtype)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes("hrt-lun:" + name));
        var serial = Convert.ToHexString(hash, 0, 12).ToLowerInvariant();
        // NAA 3h (locally assigned): 4-bit NAA then a 60-bit value we own.
        var naa = (0x3UL << 60) | (System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(hash.AsSpan(12)) & 0x0FFF_FFFF_FFFF_FFFFUL);
        var product = (subtype.ToUpperInvariant() + " DISK");
        return new LunIdentity(name, serial, naa, product.Length > 16 ? product[..16] : product);
    }

    public string Wwn => $"naa.{Naa:x16}";
}
