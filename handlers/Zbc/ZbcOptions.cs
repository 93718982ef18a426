using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Zbc;

/// <summary>
/// The handler config <c>[opt[/opt]...@]&lt;absolute path&gt;</c>. Options describe the format
/// of a new file; on an existing file the ones given must agree with it. A null option was
/// not given.
/// </summary>
internal sealed record ZbcOptions(string Path)
{
    public const int DefaultZoneSizeMiB = 256;
    public const int DefaultOpenZones = 128;
    public const int MaxZoneSizeMiB = 1 << 16;

    public ZoneModel? Model { get; init; }
    public int? LbaSize { get; init; }
    public int? ZoneSizeMiB { get; init; }
    public int? ConventionalZones { get; init; }
    public int? OpenZones { get; init; }
    public bool? UnrestrictedReads { get; init; }

    public const string Help =
        "zbc/[model-HM|HA][/lba-512|4096][/zsize-<MiB>][/conv-<N>][/open-<N>][/urswrz-0|1]@<absolute path>  " +
        "A zoned disk (ZBC) emulated on a regular file, with write pointers that survive crashes. " +
        "Options format a new file (a size is then required): model-HM host-managed (default) or model-HA host-aware; " +
        "lba- logical block size (default 512); zsize- zone size in MiB, a power of two (default 256); " +
        "conv- conventional zones at LBA 0 (default 1% of the zones, at least 1); open- maximum (HM) or optimal (HA) open zones " +
        "(default 128, at most half the sequential zones); urswrz-0 restricts reads past write pointers (default 1, unrestricted, as Linux requires). " +
        "An existing file keeps its data and zones; options that contradict it are refused, never reformatted. " +
        "zbc//<path> opens an existing file as it is. Example: zbc/model-HM/zsize-128/conv-100@/var/local/zbc.raw";

    /// <summary>Parses a handler config, or says in one sentence what is wrong with it.</summary>
    public static ZbcOptions? Parse(string config, out string? error)
    {
        error = null;
        if (string.IsNullOrEmpty(config))
        {
            error = "The zbc config is empty; write zbc/[options@]<absolute path>, e.g. zbc/model-HM/zsize-128@/var/local/zbc.raw.";
            return null;
        }
        string path;
        string optionText;
        if (config[0] == '/')
        {
            path = config;
            optionText = "";
        }
        else
        {
            var at = config.IndexOf('@');
            if (at < 0)
            {
                error = $"'{config}' has no '@<path>'; write zbc/[options@]<absolute path>, e.g. zbc/model-HM/zsize-128@/var/local/zbc.raw.";
                return null;
            }
            optionText = config[..at];
            path = config[(at + 1)..];
        }
        if (path.Length < 2 || path[0] != '/' || path.EndsWith('/'))
        {
            error = $"'{path}' is not an absolute file path; the zbc backing store is a regular file, e.g. @/var/local/zbc.raw.";
            return null;
        }

        var options = new ZbcOptions(path);
        if (optionText.Length == 0)
            return options;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var option in optionText.Split('/'))
        {
            var dash = option.IndexOf('-');
            var name = dash < 0 ? option : option[..dash];
            var value = dash < 0 ? "" : option[(dash + 1)..];
            if (!seen.Add(name) && name.Length > 0)
            {
                error = $"Option {name}- appears twice in '{config}'; give it once.";
                return null;
            }
            ZbcOptions? next = name switch
            {
                "model" => value.ToUpperInvariant() switch
                {
                    "HM" => options with { Model = ZoneModel.HostManaged },
                    "HA" => options with { Model = ZoneModel.HostAware },
                    _ => Fail($"'{option}' is not a zone model; write model-HM (host-managed) or model-HA (host-aware).", out error),
                },
                "lba" => value switch
                {
                    "512" => options with { LbaSize = 512 },
                    "4096" => options with { LbaSize = 4096 },
                    _ => Fail($"'{option}' is not a supported logical block size; write lba-512 or lba-4096.", out error),
                },
                "zsize" => int.TryParse(value, System.Globalization.NumberStyles.None, null, out var mib) && mib > 0 && mib <= MaxZoneSizeMiB && (mib & (mib - 1)) == 0
                    ? options with { ZoneSizeMiB = mib }
                    : Fail($"'{option}' is not a zone size; write zsize-<MiB> with a power of two from 1 to {MaxZoneSizeMiB}, e.g. zsize-256.", out error),
                "conv" => int.TryParse(value, System.Globalization.NumberStyles.None, null, out var conv)
                    ? options with { ConventionalZones = conv }
                    : Fail($"'{option}' is not a number of conventional zones; write conv-<N>, e.g. conv-1 (conv-0 for none).", out error),
                "open" => int.TryParse(value, System.Globalization.NumberStyles.None, null, out var open) && open > 0
                    ? options with { OpenZones = open }
                    : Fail($"'{option}' is not a number of open zones; write open-<N> with N at least 1, e.g. open-128.", out error),
                "urswrz" => value switch
                {
                    "1" => options with { UnrestrictedReads = true },
                    "0" => options with { UnrestrictedReads = false },
                    _ => Fail($"'{option}' is not an URSWRZ setting; write urswrz-1 (unrestricted reads) or urswrz-0.", out error),
                },
                _ => Fail($"'{option}' is not a zbc option; use model-, lba-, zsize-, conv-, open- or urswrz-, separated by '/' and followed by @<path>.", out error),
            };
            if (next is null)
                return null;
            options = next;
        }
        return options;
    }

    private static ZbcOptions? Fail(string message, out string? error)
    {
        error = message;
        return null;
    }

    /// <summary>The options given, in cfgstring form, for messages.</summary>
    public override string ToString()
    {
        var parts = new List<string>();
        if (Model is { } m) parts.Add(m == ZoneModel.HostManaged ? "model-HM" : "model-HA");
        if (LbaSize is { } l) parts.Add($"lba-{l}");
        if (ZoneSizeMiB is { } z) parts.Add($"zsize-{z}");
        if (ConventionalZones is { } c) parts.Add($"conv-{c}");
        if (OpenZones is { } o) parts.Add($"open-{o}");
        if (UnrestrictedReads is { } u) parts.Add($"urswrz-{(u ? 1 : 0)}");
        return string.Join('/', parts) + "@" + Path;
    }
}
