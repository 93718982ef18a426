using System.Buffers.Binary;
using HandlerRuntime.Handlers.Zbc;
using HandlerRuntime.Sdk;
using HandlerRuntime.Zbc.Testing;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>Opens zbc devices the way the runtime does, and builds and decodes ZBC CDBs and data.</summary>
internal static class ZbcKit
{
    public static async Task<ZbcDevice> OpenAsync(string config, long size = 0, int blockSize = 0, bool readOnly = false)
        => (ZbcDevice)await new ZbcHandler().OpenAsync(OpenContexts.For(config, size, blockSize, readOnly, lunName: "z"), CancellationToken.None);

    /// <summary>A harness over a zbc device, with the power-on unit attention already consumed.</summary>
    public static async Task<ScsiHarness> HarnessAsync(string config, long size = 0, bool writeCache = true)
    {
        var h = new ScsiHarness(await OpenAsync(config, size), subtype: "zbc", writeCache: writeCache);
        await h.ClearUnitAttentionAsync();
        return h;
    }

    // ---- CDBs ----

    public static byte[] Read16(long lba, int blocks) => Cdbs.Read16((ulong)lba, (uint)blocks);
    public static byte[] Write16(long lba, int blocks, bool fua = false) => Cdbs.Write16((ulong)lba, (uint)blocks, fua ? Cdbs.Fua : (byte)0);
    public static byte[] Read10(long lba, int blocks) => Cdbs.Read10((uint)lba, (ushort)blocks);
    public static byte[] Write10(long lba, int blocks) => Cdbs.Write10((uint)lba, (ushort)blocks);
    public static byte[] Read12(long lba, int blocks) => Cdbs.Read12((uint)lba, (uint)blocks);
    public static byte[] Write12(long lba, int blocks) => Cdbs.Write12((uint)lba, (uint)blocks);

    public static byte[] SyncCache10 => [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    public static byte[] SyncCache16 => [0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    public static byte[] ReportZones(long startLba, int allocation, ZoneReportingOptions options = ZoneReportingOptions.All, bool partial = false)
        => Cdbs.ReportZones((ulong)startLba, (uint)allocation, (byte)options, partial);

    public static byte[] ZoneOut(ZoneAction action, long zoneId, bool all = false) => Cdbs.ZoneOut((byte)action, (ulong)zoneId, all);

    public static byte[] Inquiry(int page = -1, int allocation = 255)
        => [0x12, page >= 0 ? (byte)1 : (byte)0, page >= 0 ? (byte)page : (byte)0, (byte)(allocation >> 8), (byte)allocation, 0];

    public static byte[] ReadCapacity16 => [0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];

    // ---- data ----

    public static byte[] Pattern(long lba, int blocks, int blockSize, long writeId) => BlockPattern.Blocks(lba, blocks, blockSize, writeId);

    public static long WriteIdOf(ReadOnlySpan<byte> block, long lba) => BlockPattern.WriteIdOf(block, lba);

    /// <summary>A decoded REPORT ZONES answer.</summary>
    public sealed record Report(uint ListLength, byte Same, ulong MaxLba, ZoneDescriptor[] Zones);

    public static Report ParseReport(byte[] data)
    {
        Assert.True(data.Length >= 64, $"REPORT ZONES returned {data.Length} bytes, less than its header");
        var zones = new List<ZoneDescriptor>();
        for (var at = 64; at + 64 <= data.Length; at += 64)
        {
            var d = data.AsSpan(at, 64);
            zones.Add(new ZoneDescriptor(
                Start: (long)BinaryPrimitives.ReadUInt64BigEndian(d[16..]),
                Length: (long)BinaryPrimitives.ReadUInt64BigEndian(d[8..]),
                Type: (ZoneType)(d[0] & 0x0F),
                Condition: (ZoneCondition)(d[1] >> 4),
                WritePointer: (long)BinaryPrimitives.ReadUInt64BigEndian(d[24..]),
                NonSequential: (d[1] & 0x02) != 0,
                ResetRecommended: (d[1] & 0x01) != 0));
        }
        return new Report(BinaryPrimitives.ReadUInt32BigEndian(data), (byte)(data[4] & 0x0F), BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(8)), zones.ToArray());
    }

    public static async Task<ZoneDescriptor[]> ReportAllAsync(ScsiHarness h)
    {
        var r = await h.RunAsync(ReportZones(0, 64 + 64 * 1024));
        AssertGood(r);
        return ParseReport(r.DataIn).Zones;
    }

    public static async Task<ZoneDescriptor> ZoneAsync(ScsiHarness h, long startLba)
    {
        var r = await h.RunAsync(ReportZones(startLba, 128));
        AssertGood(r);
        return ParseReport(r.DataIn).Zones[0];
    }

    public static void AssertGood(ScsiResult r, string? what = null)
        => Assert.True(r.Good, $"{what ?? "command"}: expected GOOD, got {r}");

    public static void AssertSense(ScsiResult r, SenseKey key, byte asc, byte ascq, string? what = null)
    {
        Assert.True(r.Status == ScsiStatus.CheckCondition, $"{what ?? "command"}: expected CHECK CONDITION {key} {asc:X2}h/{ascq:X2}h, got {r}");
        Assert.True(r.Sense.Key == key && r.Sense.Asc == asc && r.Sense.Ascq == ascq,
            $"{what ?? "command"}: expected {key} {asc:X2}h/{ascq:X2}h, got {r.Sense}");
        // the fixed-format bytes carry the same values
        Assert.Equal((byte)key, (byte)(r.SenseBytes[2] & 0x0F));
        Assert.Equal(asc, r.SenseBytes[12]);
        Assert.Equal(ascq, r.SenseBytes[13]);
    }
}

/// <summary>A plain, non-zoned device in memory, to check that ZBC commands stay off ordinary LUNs.</summary>
internal sealed class MemoryDevice(long blocks, int blockSize = 512) : IBlockDevice
{
    private readonly byte[] data = new byte[blocks * blockSize];

    public DeviceGeometry Geometry { get; } = new() { LogicalBlockSize = blockSize, BlockCount = blocks };

    public DeviceCapabilities Capabilities => DeviceCapabilities.Write;

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        data.AsSpan((int)offset, destination.Length).CopyTo(destination.Span);
        return default;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
    {
        source.Span.CopyTo(data.AsSpan((int)offset));
        return default;
    }

    public ValueTask DisposeAsync() => default;
}
