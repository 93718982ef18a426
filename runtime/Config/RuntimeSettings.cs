using HandlerRuntime.Luns;
using HandlerRuntime.Logging;
using HandlerRuntime.Scsi;
using Microsoft.Extensions.Configuration;

namespace HandlerRuntime.Config;

/// <summary>
/// The validated configuration: built from JSON (conf/hrt.json), the environment
/// (HRT_*) and the command line, later sources winning. Anything wrong is reported as
/// one sentence per problem, naming the field, and the whole configuration is refused.
/// </summary>
public sealed record RuntimeSettings
{
    public required int LogLevel { get; init; }
    public required string LogDirectory { get; init; }
    public required string HandlerPath { get; init; }
    public required string StateDirectory { get; init; }
    public required string ControlSocket { get; init; }
    public required IReadOnlyList<string> Portals { get; init; }
    public required IReadOnlyList<TargetSettings> Targets { get; init; }
    public required IReadOnlyList<LunDefinition> Luns { get; init; }

    /// <summary>How fast SANITIZE OVERWRITE may write, in bytes per second (0: unlimited), so erasing one LU does not starve the rest.</summary>
    public long SanitizeBytesPerSecond { get; init; } = DefaultSanitizeRate;

    /// <summary>Where the Prometheus endpoint listens (<c>metrics.listen</c>); null: no endpoint.</summary>
    public string? MetricsListen { get; init; }

    /// <summary><c>tcmu.enabled</c>: serve LIO user: backstores where target_core_user is present (default true).</summary>
    public bool TcmuEnabled { get; init; } = true;

    /// <summary>The raw <c>iscsi</c> section, for the fabric's own options.</summary>
    public required IConfigurationSection Iscsi { get; init; }

    /// <summary>The raw <c>handlers</c> section: <c>handlers.&lt;subtype&gt;</c> holds that handler's own settings (<see cref="Sdk.IHandlerSettings"/>).</summary>
    public IConfigurationSection? Handlers { get; init; }

    /// <summary>The settings of the handler of <paramref name="subtype"/>, as JSON; null when there are none.</summary>
    public System.Text.Json.Nodes.JsonObject? HandlerSettings(string subtype)
        => Handlers is null ? null : ConfigJson.ToJsonObject(Handlers.GetSection(subtype));
    /// <summary>The raw <c>nbd</c> section, for the NBD fabric's own options (Fabrics/Nbd/NbdOptions).</summary>
    public required IConfigurationSection Nbd { get; init; }

    public const string DefaultPortal = "127.0.0.1:3260";
    public const string DefaultControlSocket = "/run/hrt/hrt.sock";
    public const string DefaultLogDirectory = "/var/log";
    public const string DefaultStateDirectory = "/var/lib/hrt";
    public const long DefaultSanitizeRate = 128L << 20;

    public static (RuntimeSettings? Settings, IReadOnlyList<string> Errors) From(IConfiguration config, string defaultHandlerPath)
    {
        var errors = new List<string>();

        var level = LogLevels.Default;
        if (config["logLevel"] is { } levelText && !LogLevels.TryParse(levelText, out level))
            errors.Add($"logLevel: '{levelText}' is not a log level; use {LogLevels.Accepted}.");

        var portals = config.GetSection("iscsi:portals").GetChildren().Select(c => c.Value ?? "").ToList();
        if (portals.Count == 0)
            portals.Add(DefaultPortal);
        foreach (var p in portals)
            if (!TryParsePortal(p, out _, out _))
                errors.Add($"iscsi.portals: '{p}' is not an address:port (for example 127.0.0.1:3260 or [::1]:3260).");

        var targets = new List<TargetSettings>();
        var i = 0;
        foreach (var t in config.GetSection("targets").GetChildren())
        {
            var where = $"targets[{i++}]";
            var name = t["name"];
            if (string.IsNullOrWhiteSpace(name) || !IsIscsiName(name))
            {
                errors.Add($"{where}.name: '{name}' is not an iSCSI name (iqn.yyyy-mm.reverse.domain:id or eui.<16 hex>).");
                continue;
            }
            var initiators = t.GetSection("initiators").GetChildren().Select(c => c.Value ?? "").ToList();
            ChapCredentials? chap = null;
            var c = t.GetSection("chap");
            if (c.Exists())
            {
                var (user, secret, mu, ms) = (c["user"], c["secret"], c["mutualUser"], c["mutualSecret"]);
                if (string.IsNullOrEmpty(user) || string.IsNullOrEmpty(secret))
                    errors.Add($"{where}.chap: both user and secret are required.");
                else if (secret.Length < 12)
                    errors.Add($"{where}.chap.secret: use at least 12 characters (RFC 7143 recommends 12-16 for CHAP secrets).");
                if (string.IsNullOrEmpty(mu) != string.IsNullOrEmpty(ms))
                    errors.Add($"{where}.chap: mutual CHAP needs both mutualUser and mutualSecret.");
                else if (!string.IsNullOrEmpty(ms) && ms == secret)
                    errors.Add($"{where}.chap: the mutual secret must differ from the initiator's secret.");
                if (user is not null && secret is not null)
                    chap = new ChapCredentials(user, secret, string.IsNullOrEmpty(mu) ? null : mu, string.IsNullOrEmpty(ms) ? null : ms);
            }
            if (targets.Any(x => x.Name.Equals(name, StringComparison.OrdinalIgnoreCase)))
                errors.Add($"{where}.name: target {name} is listed twice.");
            targets.Add(new TargetSettings(name, new TargetAccess(initiators, chap)));
        }

        var luns = new List<LunDefinition>();
        i = 0;
        foreach (var l in config.GetSection("luns").GetChildren())
        {
            var where = $"luns[{i++}]";
            var name = l["name"];
            var cfg = l["cfgstring"];
            if (string.IsNullOrWhiteSpace(name) || string.IsNullOrWhiteSpace(cfg))
            {
                errors.Add($"{where}: name and cfgstring are required.");
                continue;
            }
            var def = new LunDefinition(name, cfg);
            if (l["size"] is { } sizeText)
            {
                if (Sizes.TryParse(sizeText, out var size))
                    def = def with { Size = size };
                else
                    errors.Add($"{where}.size: '{sizeText}' is not a size; write bytes or a number with K, M, G or T, e.g. 256M.");
            }
            if (l["blockSize"] is { } bsText)
            {
                if (int.TryParse(bsText, out var bs))
                    def = def with { BlockSize = bs };
                else
                    errors.Add($"{where}.blockSize: '{bsText}' is not a number.");
            }
            if (l["target"] is { Length: > 0 } target)
                def = def with { Target = target };
            if (l["physicalBlockSize"] is { } pbsText)
            {
                if (Sizes.TryParse(pbsText, out var pbs) && pbs <= int.MaxValue)
                    def = def with { PhysicalBlockSize = (int)pbs };
                else
                    errors.Add($"{where}.physicalBlockSize: '{pbsText}' is not a size; write e.g. 4096 or 4K.");
            }
            if (l["lun"] is { } lunText)
            {
                if (int.TryParse(lunText, out var n))
                    def = def with { Lun = n };
                else
                    errors.Add($"{where}.lun: '{lunText}' is not a number.");
            }
            def = def with
            {
                WriteCache = Bool(l, "writeCache", true, where, errors),
                ReadOnly = Bool(l, "readOnly", false, where, errors),
                Removable = Bool(l, "removable", false, where, errors),
            };
            if (def.Validate() is { } invalid)
                errors.Add($"{where}: {invalid}");
            if (luns.Any(x => x.Name == def.Name))
                errors.Add($"{where}: LUN name {def.Name} is used twice.");
            luns.Add(def);
        }
        foreach (var clash in luns.Where(d => d.Lun is not null).GroupBy(d => ((d.Target ?? TargetRegistry.DefaultTargetName).ToLowerInvariant(), d.Lun)).Where(g => g.Count() > 1))
            errors.Add($"luns: {string.Join(" and ", clash.Select(d => d.Name))} both ask for LUN {clash.Key.Lun} of {clash.Key.Item1}.");

        var sanitizeRate = DefaultSanitizeRate;
        if (config["sanitizeRate"] is { } rateText && !Sizes.TryParse(rateText, out sanitizeRate))
            errors.Add($"sanitizeRate: '{rateText}' is not a size per second; write e.g. 128M, or 0 for no limit.");

        var metrics = NonEmpty(config["metrics:listen"]);
        if (metrics is not null && !TryParsePortal(metrics, out _, out _))
            errors.Add($"metrics.listen: '{metrics}' is not an address:port (for example 127.0.0.1:9464).");
        var tcmuEnabled = Bool(config.GetSection("tcmu"), "enabled", true, "tcmu", errors);

        if (errors.Count > 0)
            return (null, errors);
        return (new RuntimeSettings
        {
            LogLevel = level,
            LogDirectory = NonEmpty(config["logDir"]) ?? DefaultLogDirectory,
            HandlerPath = NonEmpty(config["handlerPath"]) ?? defaultHandlerPath,
            StateDirectory = NonEmpty(config["stateDir"]) ?? DefaultStateDirectory,
            ControlSocket = NonEmpty(config["control"]) ?? DefaultControlSocket,
            Portals = portals,
            Targets = targets,
            Luns = luns,
            SanitizeBytesPerSecond = sanitizeRate,
            TcmuEnabled = tcmuEnabled,
            Iscsi = config.GetSection("iscsi"),
            Handlers = config.GetSection("handlers"),
            MetricsListen = metrics,
            Nbd = config.GetSection("nbd"),
        }, errors);
    }

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s;

    private static bool Bool(IConfiguration section, string key, bool fallback, string where, List<string> errors)
    {
        var text = section[key];
        if (text is null)
            return fallback;
        if (bool.TryParse(text, out var b))
            return b;
        errors.Add($"{where}.{key}: '{text}' is not true or false.");
        return fallback;
    }

    public static bool TryParsePortal(string text, out string host, out int port)
    {
        host = "";
        port = 3260;
        if (string.IsNullOrWhiteSpace(text))
            return false;
        var colon = text.LastIndexOf(':');
        var close = text.LastIndexOf(']');
        if (colon > close && colon > 0)
        {
            if (!int.TryParse(text[(colon + 1)..], out port) || port is <= 0 or > 65535)
                return false;
            host = text[..colon];
        }
        else
        {
            host = text;
        }
        host = host.Trim('[', ']');
        return System.Net.IPAddress.TryParse(host, out _) || host == "localhost";
    }

    private static bool IsIscsiName(string name)
        => (name.StartsWith("iqn.", StringComparison.OrdinalIgnoreCase) && name.Length > 12)
           || (name.StartsWith("eui.", StringComparison.OrdinalIgnoreCase) && name.Length == 20)
           || (name.StartsWith("naa.", StringComparison.OrdinalIgnoreCase) && name.Length is 20 or 36);
}

/// <summary>A configured target: its name and who may use it.</summary>
public sealed record TargetSettings(string Name, TargetAccess Access);
