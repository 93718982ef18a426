using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Zbc;

/// <summary>
/// The shape of one emulated zoned device: what its header records. Zones are
/// <see cref="ZoneBlocks"/> long (the last one may be shorter), the first
/// <see cref="ConventionalZones"/> of them conventional, the rest sequential.
/// </summary>
internal sealed record ZbcLayout
{
    public const int MaxZones = 1 << 24;

    public required ZoneModel Model { get; init; }
    public required int LbaSize { get; init; }
    public required long CapacityBlocks { get; init; }
    public required long ZoneBlocks { get; init; }
    public required int ZoneCount { get; init; }
    public required int ConventionalZones { get; init; }
    /// <summary>Maximum (host-managed) or optimal (host-aware) open zones.</summary>
    public required int OpenZones { get; init; }
    public required bool UnrestrictedReads { get; init; }

    public int SequentialZones => ZoneCount - ConventionalZones;
    public long ZoneSizeBytes => ZoneBlocks * LbaSize;
    public long ZoneTableOffset => ZbcFormat.HeaderBytes;
    /// <summary>Data starts on a 4 KiB boundary after the zone table, so 4096-byte LBAs stay aligned.</summary>
    public long DataOffset => (ZoneTableOffset + (long)ZoneCount * ZbcFormat.ZoneRecordBytes + 4095) & ~4095L;
    public long FileLength => DataOffset + CapacityBlocks * LbaSize;

    /// <summary>tcmu-runner's rule: the open-zone count is capped at half the sequential zones (at least 1).</summary>
    public static int EffectiveOpenZones(int requested, int sequentialZones) => Math.Min(requested, Math.Max(1, sequentialZones / 2));

    /// <summary>The layout of a new device of <paramref name="sizeBytes"/> with these options, or a sentence saying why not.</summary>
    public static ZbcLayout? ForNewDevice(ZbcOptions options, long sizeBytes, int requestedBlockSize, out string? error)
    {
        error = null;
        var path = options.Path;
        if (requestedBlockSize != 0 && options.LbaSize is { } lbaOption && lbaOption != requestedBlockSize)
        {
            error = $"The cfgstring asks for lba-{lbaOption} but the LUN for a {requestedBlockSize}-byte block size; give one of them, or the same value in both.";
            return null;
        }
        var lba = options.LbaSize ?? (requestedBlockSize != 0 ? requestedBlockSize : 512);
        if (lba is not (512 or 4096))
        {
            error = $"A zbc device has 512- or 4096-byte logical blocks, not {lba}; use lba-512 or lba-4096.";
            return null;
        }
        if (sizeBytes <= 0)
        {
            error = $"{path} does not exist yet; give a size (for example --size 10G) to create a zbc device there.";
            return null;
        }
        if (sizeBytes % lba != 0)
        {
            error = $"A size of {sizeBytes} bytes is not a whole number of {lba}-byte blocks; give a multiple of {lba}.";
            return null;
        }
        var zoneMiB = options.ZoneSizeMiB ?? ZbcOptions.DefaultZoneSizeMiB;
        var zoneBlocks = ((long)zoneMiB << 20) / lba;
        var capacity = sizeBytes / lba;
        var zones = (capacity + zoneBlocks - 1) / zoneBlocks;
        if (zones > MaxZones)
        {
            error = $"{sizeBytes} bytes in {zoneMiB} MiB zones makes {zones} zones, more than {MaxZones}; use larger zones.";
            return null;
        }
        var conventional = options.ConventionalZones ?? (int)Math.Max(1, zones / 100);
        if (conventional >= zones)
        {
            error = $"{conventional} conventional zone(s) of {zoneMiB} MiB leave no sequential zone in {sizeBytes} bytes; " +
                    $"give a size above {(long)(conventional) * zoneMiB} MiB, a smaller zsize-, or fewer conventional zones (conv-0 is allowed).";
            return null;
        }
        var sequential = (int)zones - conventional;
        return new ZbcLayout
        {
            Model = options.Model ?? ZoneModel.HostManaged,
            LbaSize = lba,
            CapacityBlocks = capacity,
            ZoneBlocks = zoneBlocks,
            ZoneCount = (int)zones,
            ConventionalZones = conventional,
            OpenZones = EffectiveOpenZones(options.OpenZones ?? ZbcOptions.DefaultOpenZones, sequential),
            UnrestrictedReads = options.UnrestrictedReads ?? true,
        };
    }

    /// <summary>
    /// How the options and LUN settings given contradict this (existing) device, as one
    /// sentence, or null when they agree. Options not given agree with anything.
    /// </summary>
    public string? Contradictions(ZbcOptions options, long requestedSize, int requestedBlockSize)
    {
        var has = new List<string>();
        var asked = new List<string>();
        void Differs(string fileSays, string cfgSays)
        {
            has.Add(fileSays);
            asked.Add(cfgSays);
        }
        if (options.Model is { } model && model != Model)
            Differs(ModelName(Model), ModelName(model));
        if (options.LbaSize is { } lba && lba != LbaSize)
            Differs($"lba-{LbaSize}", $"lba-{lba}");
        if (requestedBlockSize != 0 && requestedBlockSize != LbaSize)
            Differs($"{LbaSize}-byte blocks", $"{requestedBlockSize}-byte blocks");
        if (options.ZoneSizeMiB is { } zsize && ((long)zsize << 20) != ZoneSizeBytes)
            Differs(ZoneSizeBytes % (1 << 20) == 0 ? $"zsize-{ZoneSizeBytes >> 20}" : $"{ZoneSizeBytes}-byte zones", $"zsize-{zsize}");
        if (options.ConventionalZones is { } conv && conv != ConventionalZones)
            Differs($"conv-{ConventionalZones}", $"conv-{conv}");
        if (options.OpenZones is { } open && EffectiveOpenZones(open, SequentialZones) != OpenZones)
            Differs($"open-{OpenZones}", $"open-{open}");
        if (options.UnrestrictedReads is { } urswrz && urswrz != UnrestrictedReads)
            Differs($"urswrz-{(UnrestrictedReads ? 1 : 0)}", $"urswrz-{(urswrz ? 1 : 0)}");
        if (requestedSize > 0 && requestedSize != CapacityBlocks * LbaSize)
            Differs($"a size of {CapacityBlocks * LbaSize} bytes", $"a size of {requestedSize} bytes");
        if (has.Count == 0)
            return null;
        return $"{options.Path} holds a zbc device with {string.Join(", ", has)}, but the cfgstring or LUN settings ask for {string.Join(", ", asked)}; " +
               "drop those settings to use the device as it is, or give another path to create a new one (an existing device is never reformatted).";
    }

    public static string ModelName(ZoneModel model) => model == ZoneModel.HostManaged ? "model-HM" : "model-HA";

    public override string ToString()
        => $"{ModelName(Model)}, {CapacityBlocks} blocks of {LbaSize} bytes, {ZoneCount} zones of {ZoneBlocks} blocks " +
           $"({ConventionalZones} conventional), {OpenZones} {(Model == ZoneModel.HostManaged ? "maximum" : "optimal")} open zones, URSWRZ {(UnrestrictedReads ? 1 : 0)}";
}
