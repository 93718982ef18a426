using System.Buffers.Binary;
using System.Text;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Qcow;

/// <summary>
/// The qcow2 header (docs/interop/qcow2.rst), as read at open. The handler never
/// rewrites the header as a whole: it patches single fields in place, so unknown header
/// fields, padding and extensions stay exactly as they were.
/// </summary>
internal sealed class Qcow2Header
{
    public const uint Magic = 0x514649FB; // "QFI\xfb"

    // Byte offsets of the fields the handler patches in place.
    public const int RefcountTableFieldOffset = 48; // u64 offset + u32 clusters, written as one 12-byte write
    public const int IncompatibleFieldOffset = 72;
    public const int AutoclearFieldOffset = 88;

    public const ulong IncompatibleDirty = 1 << 0;
    public const ulong IncompatibleCorrupt = 1 << 1;
    public const ulong IncompatibleDataFile = 1 << 2;
    public const ulong IncompatibleCompressionType = 1 << 3;
    public const ulong IncompatibleExtendedL2 = 1 << 4;
    public const ulong KnownIncompatible = IncompatibleDirty | IncompatibleCorrupt | IncompatibleDataFile | IncompatibleCompressionType | IncompatibleExtendedL2;

    private const uint ExtensionEnd = 0;
    private const uint ExtensionBackingFormat = 0xE2792ACA;
    private const uint ExtensionFeatureNames = 0x6803F857;
    private const uint ExtensionDataFile = 0x44415441;

    public int Version { get; private init; }
    public long BackingFileOffset { get; private init; }
    public int BackingFileSize { get; private init; }
    public int ClusterBits { get; private init; }
    public long VirtualSize { get; private init; }
    public uint CryptMethod { get; private init; }
    public int L1Size { get; private init; }
    public long L1Offset { get; private init; }
    public long RefcountTableOffset { get; set; }
    public int RefcountTableClusters { get; set; }
    public int SnapshotCount { get; private init; }
    public long SnapshotsOffset { get; private init; }
    public ulong Incompatible { get; set; }
    public ulong Compatible { get; private init; }
    public ulong Autoclear { get; set; }
    public int RefcountOrder { get; private init; }
    public int HeaderLength { get; private init; }
    public byte CompressionType { get; private init; }
    public string? BackingFile { get; private set; }
    public string? BackingFormat { get; private set; }
    public string? DataFile { get; private set; }
    public Dictionary<(int Type, int Bit), string> FeatureNames { get; } = new();

    public int ClusterSize => 1 << ClusterBits;
    public bool ExtendedL2 => (Incompatible & IncompatibleExtendedL2) != 0;

    /// <summary>
    /// Parses the header from the image's first cluster (or as much of it as the file has).
    /// Throws <see cref="HandlerConfigException"/> with a sentence for anything this handler
    /// cannot serve correctly.
    /// </summary>
    public static Qcow2Header Parse(ReadOnlySpan<byte> b, string path)
    {
        if (b.Length < 72 || BinaryPrimitives.ReadUInt32BigEndian(b) != Magic)
            throw new HandlerConfigException($"{path} is not a qcow2 image (no QFI\\xfb magic).");
        var version = (int)BinaryPrimitives.ReadUInt32BigEndian(b[4..]);
        if (version is not (2 or 3))
            throw new HandlerConfigException($"{path} is qcow2 version {version}; only versions 2 and 3 are supported, convert it with qemu-img convert -O qcow2.");
        var clusterBits = (int)BinaryPrimitives.ReadUInt32BigEndian(b[20..]);
        if (clusterBits is < 9 or > 21)
            throw new HandlerConfigException($"{path} has cluster_bits {clusterBits}; cluster sizes from 512 bytes to 2 MiB (9-21) are supported.");
        var h = new Qcow2Header
        {
            Version = version,
            BackingFileOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(b[8..]),
            BackingFileSize = (int)BinaryPrimitives.ReadUInt32BigEndian(b[16..]),
            ClusterBits = clusterBits,
            VirtualSize = (long)BinaryPrimitives.ReadUInt64BigEndian(b[24..]),
            CryptMethod = BinaryPrimitives.ReadUInt32BigEndian(b[32..]),
            L1Size = (int)BinaryPrimitives.ReadUInt32BigEndian(b[36..]),
            L1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(b[40..]),
            RefcountTableOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(b[48..]),
            RefcountTableClusters = (int)BinaryPrimitives.ReadUInt32BigEndian(b[56..]),
            SnapshotCount = (int)BinaryPrimitives.ReadUInt32BigEndian(b[60..]),
            SnapshotsOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(b[64..]),
            Incompatible = version >= 3 ? BinaryPrimitives.ReadUInt64BigEndian(b[72..]) : 0,
            Compatible = version >= 3 ? BinaryPrimitives.ReadUInt64BigEndian(b[80..]) : 0,
            Autoclear = version >= 3 ? BinaryPrimitives.ReadUInt64BigEndian(b[88..]) : 0,
            RefcountOrder = version >= 3 ? (int)BinaryPrimitives.ReadUInt32BigEndian(b[96..]) : 4,
            HeaderLength = version >= 3 ? (int)BinaryPrimitives.ReadUInt32BigEndian(b[100..]) : 72,
            CompressionType = version >= 3 && BinaryPrimitives.ReadUInt32BigEndian(b[100..]) > 104 ? b[104] : (byte)0,
        };
        h.Validate(b, path);
        return h;
    }

    private void Validate(ReadOnlySpan<byte> b, string path)
    {
        var cs = ClusterSize;
        if (Version >= 3 && (HeaderLength < 104 || HeaderLength % 8 != 0 || HeaderLength > cs || HeaderLength > b.Length))
            throw new HandlerConfigException($"{path} has an invalid qcow2 header length {HeaderLength}; the image is damaged.");
        ReadExtensions(b, path);
        if (CryptMethod != 0)
            throw new HandlerConfigException($"{path} is encrypted ({(CryptMethod == 1 ? "AES" : CryptMethod == 2 ? "LUKS" : $"method {CryptMethod}")}); encrypted images are not supported, decrypt it with qemu-img convert first.");
        var unknown = Incompatible & ~KnownIncompatible;
        if (unknown != 0)
        {
            var names = Enumerable.Range(0, 64).Where(i => (unknown & (1UL << i)) != 0)
                .Select(i => FeatureNames.TryGetValue((0, i), out var n) ? $"'{n}' (bit {i})" : $"bit {i}");
            throw new HandlerConfigException($"{path} uses incompatible qcow2 features this handler does not know: {string.Join(", ", names)}; it cannot be opened safely.");
        }
        if ((Incompatible & IncompatibleDataFile) != 0)
            throw new HandlerConfigException($"{path} keeps its data in an external data file{(DataFile is null ? "" : $" ({DataFile})")}, which this handler does not support; convert it to a self-contained image with qemu-img convert -O qcow2.");
        if ((Incompatible & IncompatibleCompressionType) != 0)
        {
            if (HeaderLength <= 104)
                throw new HandlerConfigException($"{path} sets the compression type feature but has no compression type field; the image is damaged.");
            if (CompressionType != 1)
                throw new HandlerConfigException($"{path} uses compression type {CompressionType}; only deflate (0) and zstd (1) are supported.");
        }
        else if (CompressionType != 0)
            throw new HandlerConfigException($"{path} names compression type {CompressionType} without the compression type feature bit; the image is damaged.");
        if (ExtendedL2 && ClusterBits < 14)
            throw new HandlerConfigException($"{path} uses extended L2 entries with {cs}-byte clusters; they need at least 16 KiB clusters, the image is damaged.");
        if (RefcountOrder is < 0 or > 6)
            throw new HandlerConfigException($"{path} has refcount_order {RefcountOrder}; refcount widths of 1 to 64 bits (order 0-6) are valid.");
        if (VirtualSize < 0)
            throw new HandlerConfigException($"{path} has an invalid virtual size.");
        if (L1Offset % cs != 0 || RefcountTableOffset % cs != 0 || RefcountTableOffset == 0 || (SnapshotCount > 0 && SnapshotsOffset % cs != 0))
            throw new HandlerConfigException($"{path} has a table that is not cluster aligned; the image is damaged (qemu-img check -r all may repair it).");
        if ((long)L1Size * 8 > 32 << 20)
            throw new HandlerConfigException($"{path} has an L1 table of {L1Size} entries, larger than the 32 MiB QEMU allows.");
        var l2Entries = (long)cs / (ExtendedL2 ? 16 : 8);
        var neededL1 = (VirtualSize + (long)cs * l2Entries - 1) / ((long)cs * l2Entries);
        if (L1Size < neededL1)
            throw new HandlerConfigException($"{path} has an L1 table of {L1Size} entries, too small for its virtual size; the image is damaged.");
        if ((long)RefcountTableClusters * cs > 8L << 20 << 3)
            throw new HandlerConfigException($"{path} has an oversized refcount table; the image is damaged.");
        if (BackingFileOffset != 0)
        {
            if (BackingFileSize is <= 0 or > 1023 || BackingFileOffset + BackingFileSize > Math.Min(cs, b.Length))
                throw new HandlerConfigException($"{path} has an invalid backing file name field; the image is damaged.");
            BackingFile = Encoding.UTF8.GetString(b.Slice((int)BackingFileOffset, BackingFileSize));
        }
    }

    private void ReadExtensions(ReadOnlySpan<byte> b, string path)
    {
        var end = Math.Min(ClusterSize, b.Length);
        var pos = HeaderLength;
        while (pos + 8 <= end)
        {
            var type = BinaryPrimitives.ReadUInt32BigEndian(b[pos..]);
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(b[(pos + 4)..]);
            if (type == ExtensionEnd)
                return;
            if (length < 0 || pos + 8 + length > end)
                throw new HandlerConfigException($"{path} has a header extension (type 0x{type:x8}) that runs past the first cluster; the image is damaged.");
            var data = b.Slice(pos + 8, length);
            switch (type)
            {
                case ExtensionBackingFormat:
                    BackingFormat = Encoding.UTF8.GetString(data);
                    break;
                case ExtensionDataFile:
                    DataFile = Encoding.UTF8.GetString(data);
                    break;
                case ExtensionFeatureNames:
                    for (var i = 0; i + 48 <= data.Length; i += 48)
                    {
                        var name = data.Slice(i + 2, 46);
                        var zero = name.IndexOf((byte)0);
                        FeatureNames[(data[i], data[i + 1])] = Encoding.UTF8.GetString(zero < 0 ? name : name[..zero]);
                    }
                    break;
                // Every other extension (bitmaps, LUKS, unknown) is left alone: the header is never rewritten.
            }
            pos += 8 + (length + 7) / 8 * 8;
        }
    }
}

/// <summary>One internal snapshot's L1 table and the size of its table entry, enough to count references.</summary>
internal readonly record struct SnapshotInfo(long L1Offset, int L1Size);

internal static class SnapshotTable
{
    /// <summary>Reads the snapshot table: each snapshot's L1 table and the byte length of the whole table.</summary>
    public static async ValueTask<(List<SnapshotInfo> Snapshots, long TableBytes)> ReadAsync(ImageStorage file, Qcow2Header h)
    {
        var list = new List<SnapshotInfo>();
        if (h.SnapshotCount == 0)
            return (list, 0);
        long pos = h.SnapshotsOffset;
        var fixedPart = new byte[40];
        for (var i = 0; i < h.SnapshotCount; i++)
        {
            await file.ReadAsync(pos, fixedPart);
            var l1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(fixedPart);
            var l1Size = (int)BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(8));
            var idLength = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(12));
            var nameLength = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(14));
            var extraSize = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(36));
            if (extraSize > 1 << 16 || l1Offset % h.ClusterSize != 0)
                throw new HandlerConfigException($"{file.Name} has a damaged snapshot table (entry {i}); qemu-img check may tell more.");
            list.Add(new SnapshotInfo(l1Offset, l1Size));
            var entry = 40 + extraSize + idLength + nameLength;
            pos += (entry + 7) / 8 * 8;
        }
        return (list, pos - h.SnapshotsOffset);
    }
}
