using System.Buffers.Binary;
using System.Numerics;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Zbc;

/// <summary>
/// The on-disk format, version 1 (little-endian; docs/zbc.md explains the choices):
/// <code>
/// 0        header (4 KiB block; 128 bytes used, CRC32C over bytes 0-123 at 124)
/// 4096     zone table: 64 bytes per zone = two 32-byte record slots
/// data     the device's blocks, from the first 4 KiB boundary after the table
/// </code>
/// A zone's state is written to the slot its new sequence number selects (odd/even), so a
/// torn record write leaves the other slot, and the state it described, intact; the valid
/// slot with the higher sequence number wins.
/// </summary>
internal static class ZbcFormat
{
    public const int Version = 1;
    public const int HeaderBytes = 4096;
    public const int HeaderUsedBytes = 128;
    public const int ZoneRecordBytes = 64;
    public const int SlotBytes = 32;
    private static ReadOnlySpan<byte> Magic => "HRT-ZBC\n"u8;

    // header field offsets
    private const int VersionAt = 8, HeaderLengthAt = 12, ModelAt = 16, LbaAt = 20, CapacityAt = 24, ZoneBlocksAt = 32,
        ZoneCountAt = 40, ConventionalAt = 44, OpenAt = 48, FlagsAt = 52, TableAt = 56, DataAt = 64, RecordBytesAt = 72, HeaderCrcAt = 124;

    // slot field offsets
    private const int SeqAt = 0, WpAt = 8, CondAt = 16, SlotFlagsAt = 17, IndexAt = 20, SlotCrcAt = 28;

    public static byte[] EncodeHeader(ZbcLayout layout)
    {
        var h = new byte[HeaderBytes];
        Magic.CopyTo(h);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(VersionAt), Version);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(HeaderLengthAt), HeaderUsedBytes);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(ModelAt), layout.Model == ZoneModel.HostManaged ? 2 : 1);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(LbaAt), layout.LbaSize);
        BinaryPrimitives.WriteInt64LittleEndian(h.AsSpan(CapacityAt), layout.CapacityBlocks);
        BinaryPrimitives.WriteInt64LittleEndian(h.AsSpan(ZoneBlocksAt), layout.ZoneBlocks);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(ZoneCountAt), layout.ZoneCount);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(ConventionalAt), layout.ConventionalZones);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(OpenAt), layout.OpenZones);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(FlagsAt), layout.UnrestrictedReads ? 1 : 0);
        BinaryPrimitives.WriteInt64LittleEndian(h.AsSpan(TableAt), layout.ZoneTableOffset);
        BinaryPrimitives.WriteInt64LittleEndian(h.AsSpan(DataAt), layout.DataOffset);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(RecordBytesAt), ZoneRecordBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(HeaderCrcAt), Crc32C(h.AsSpan(0, HeaderCrcAt)));
        return h;
    }

    /// <summary>Reads a header, or says in one sentence why the file is not a usable zbc device.</summary>
    public static ZbcLayout? DecodeHeader(ReadOnlySpan<byte> h, string path, long fileLength, out string? error)
    {
        error = null;
        if (h.Length < HeaderUsedBytes || !h[..Magic.Length].SequenceEqual(Magic))
        {
            error = $"{path} is not a zbc device (no zbc header); it is left untouched: give a new or empty file's path to create one.";
            return null;
        }
        var version = BinaryPrimitives.ReadInt32LittleEndian(h[VersionAt..]);
        if (version != Version)
        {
            error = $"{path} is a zbc device of format version {version}, which this handler (version {Version}) cannot read; open it with a matching HandlerRuntime.";
            return null;
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(h[HeaderCrcAt..]) != Crc32C(h[..HeaderCrcAt]))
        {
            error = $"{path} has a corrupt zbc header (checksum mismatch); restore it from a backup, it is not reformatted.";
            return null;
        }
        var model = BinaryPrimitives.ReadInt32LittleEndian(h[ModelAt..]);
        var layout = new ZbcLayout
        {
            Model = model == 2 ? ZoneModel.HostManaged : ZoneModel.HostAware,
            LbaSize = BinaryPrimitives.ReadInt32LittleEndian(h[LbaAt..]),
            CapacityBlocks = BinaryPrimitives.ReadInt64LittleEndian(h[CapacityAt..]),
            ZoneBlocks = BinaryPrimitives.ReadInt64LittleEndian(h[ZoneBlocksAt..]),
            ZoneCount = BinaryPrimitives.ReadInt32LittleEndian(h[ZoneCountAt..]),
            ConventionalZones = BinaryPrimitives.ReadInt32LittleEndian(h[ConventionalAt..]),
            OpenZones = BinaryPrimitives.ReadInt32LittleEndian(h[OpenAt..]),
            UnrestrictedReads = (BinaryPrimitives.ReadInt32LittleEndian(h[FlagsAt..]) & 1) != 0,
        };
        var consistent = model is 1 or 2
            && layout.LbaSize is 512 or 4096
            && layout.ZoneBlocks > 0 && BitOperations.IsPow2(layout.ZoneBlocks)
            && layout.CapacityBlocks > 0
            && layout.ZoneCount is > 0 and <= ZbcLayout.MaxZones
            && (layout.CapacityBlocks + layout.ZoneBlocks - 1) / layout.ZoneBlocks == layout.ZoneCount
            && layout.ConventionalZones >= 0 && layout.ConventionalZones < layout.ZoneCount
            && layout.OpenZones > 0
            && BinaryPrimitives.ReadInt64LittleEndian(h[TableAt..]) == layout.ZoneTableOffset
            && BinaryPrimitives.ReadInt64LittleEndian(h[DataAt..]) == layout.DataOffset
            && BinaryPrimitives.ReadInt32LittleEndian(h[RecordBytesAt..]) == ZoneRecordBytes;
        if (!consistent)
        {
            error = $"{path} has a zbc header with inconsistent fields; restore it from a backup, it is not reformatted.";
            return null;
        }
        if (fileLength < layout.FileLength)
        {
            error = $"{path} is {fileLength} bytes long but its zbc header describes {layout.FileLength}; the file was truncated: restore it from a backup.";
            return null;
        }
        return layout;
    }

    /// <summary>One zone's persisted state.</summary>
    public readonly record struct ZoneRecord(ulong Sequence, long WritePointer, ZoneCondition Condition, bool NonSequential);

    /// <summary>Where zone <paramref name="zone"/>'s slot for <paramref name="sequence"/> lives in the file.</summary>
    public static long SlotOffset(ZbcLayout layout, int zone, ulong sequence)
        => layout.ZoneTableOffset + (long)zone * ZoneRecordBytes + (long)(sequence & 1) * SlotBytes;

    public static void EncodeSlot(Span<byte> slot, int zone, in ZoneRecord record)
    {
        slot[..SlotBytes].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(slot[SeqAt..], record.Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(slot[WpAt..], record.WritePointer);
        slot[CondAt] = (byte)record.Condition;
        slot[SlotFlagsAt] = record.NonSequential ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteInt32LittleEndian(slot[IndexAt..], zone);
        BinaryPrimitives.WriteUInt32LittleEndian(slot[SlotCrcAt..], Crc32C(slot[..SlotCrcAt]));
    }

    /// <summary>Decodes a slot; false when it was never written, is torn, or belongs elsewhere.</summary>
    public static bool TryDecodeSlot(ReadOnlySpan<byte> slot, int zone, out ZoneRecord record)
    {
        record = default;
        var sequence = BinaryPrimitives.ReadUInt64LittleEndian(slot[SeqAt..]);
        if (sequence == 0
            || BinaryPrimitives.ReadUInt32LittleEndian(slot[SlotCrcAt..]) != Crc32C(slot[..SlotCrcAt])
            || BinaryPrimitives.ReadInt32LittleEndian(slot[IndexAt..]) != zone)
            return false;
        record = new ZoneRecord(sequence, BinaryPrimitives.ReadInt64LittleEndian(slot[WpAt..]), (ZoneCondition)slot[CondAt], (slot[SlotFlagsAt] & 1) != 0);
        return true;
    }

    /// <summary>CRC32C (Castagnoli), hardware accelerated where the CPU has it.</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (var b in data)
            crc = BitOperations.Crc32C(crc, b);
        return ~crc;
    }
}
