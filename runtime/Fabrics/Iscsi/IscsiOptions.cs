using Microsoft.Extensions.Configuration;

namespace HandlerRuntime.Fabrics.Iscsi;

/// <summary>
/// The iSCSI fabric's own settings, from the <c>iscsi</c> section of hrt.json. The
/// negotiation limits are what this target offers; each session uses the result of
/// negotiating them with the initiator (RFC 7143 13).
/// </summary>
public sealed record IscsiOptions
{
    /// <summary>Commands a session may have outstanding: MaxCmdSN advertises what is left of it.</summary>
    public int QueueDepth { get; init; } = 128;
    public int MaxRecvDataSegmentLength { get; init; } = 262144;
    public int MaxBurstLength { get; init; } = 1048576;
    public int FirstBurstLength { get; init; } = 262144;
    public int MaxOutstandingR2T { get; init; } = 8;
    public int MaxConnections { get; init; } = 4;
    public bool InitialR2T { get; init; }
    public bool ImmediateData { get; init; } = true;
    public int DefaultTime2Wait { get; init; } = 2;
    public int DefaultTime2Retain { get; init; }
    /// <summary>Digests this target accepts, in its order of preference (CRC32C, None).</summary>
    public IReadOnlyList<string> HeaderDigest { get; init; } = ["CRC32C", "None"];
    public IReadOnlyList<string> DataDigest { get; init; } = ["CRC32C", "None"];
    public TimeSpan LoginTimeout { get; init; } = TimeSpan.FromSeconds(15);
    /// <summary>Idle time after which the target pings with a NOP-In; zero turns pings off.</summary>
    public TimeSpan NopInInterval { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>How long a pinged connection may stay silent before it is dropped.</summary>
    public TimeSpan NopInTimeout { get; init; } = TimeSpan.FromSeconds(60);
    public int MaxSessions { get; init; } = 256;
    /// <summary>Write data a session may hold in buffers before MaxCmdSN stops opening the window.</summary>
    public long MaxSessionBufferBytes { get; init; } = 256L << 20;

    public static IscsiOptions Default { get; } = new();

    /// <summary>Reads the section; every problem is one sentence naming the key.</summary>
    public static (IscsiOptions? Options, IReadOnlyList<string> Errors) From(IConfiguration? section)
    {
        var errors = new List<string>();
        var d = Default;
        if (section is null)
            return (d, errors);
        int Int(string key, int fallback, int min, int max)
        {
            var text = section[key];
            if (text is null)
                return fallback;
            if (int.TryParse(text, out var v) && v >= min && v <= max)
                return v;
            errors.Add($"iscsi.{key}: '{text}' is not a whole number from {min} to {max}.");
            return fallback;
        }
        bool Bool(string key, bool fallback)
        {
            var text = section[key];
            if (text is null)
                return fallback;
            if (bool.TryParse(text, out var v))
                return v;
            errors.Add($"iscsi.{key}: '{text}' is not true or false.");
            return fallback;
        }
        IReadOnlyList<string> Digests(string key, IReadOnlyList<string> fallback)
        {
            var s = section.GetSection(key);
            if (!s.Exists())
                return fallback;
            var values = s.Value is { } single ? [single] : s.GetChildren().Select(c => c.Value ?? "").ToList();
            var list = new List<string>();
            foreach (var v in values)
            {
                if (v.Equals("CRC32C", StringComparison.OrdinalIgnoreCase))
                    list.Add("CRC32C");
                else if (v.Equals("None", StringComparison.OrdinalIgnoreCase))
                    list.Add("None");
                else
                    errors.Add($"iscsi.{key}: '{v}' is not a digest; use CRC32C and/or None, in order of preference.");
            }
            if (list.Count == 0)
            {
                errors.Add($"iscsi.{key}: list at least one of CRC32C and None.");
                return fallback;
            }
            return list.Distinct().ToList();
        }

        var o = new IscsiOptions
        {
            QueueDepth = Int("queueDepth", d.QueueDepth, 1, 4096),
            MaxRecvDataSegmentLength = Int("maxRecvDataSegmentLength", d.MaxRecvDataSegmentLength, 512, 16777215),
            MaxBurstLength = Int("maxBurstLength", d.MaxBurstLength, 512, 16777215),
            FirstBurstLength = Int("firstBurstLength", d.FirstBurstLength, 512, 16777215),
            MaxOutstandingR2T = Int("maxOutstandingR2T", d.MaxOutstandingR2T, 1, 65535),
            MaxConnections = Int("maxConnections", d.MaxConnections, 1, 65535),
            InitialR2T = Bool("initialR2T", d.InitialR2T),
            ImmediateData = Bool("immediateData", d.ImmediateData),
            DefaultTime2Wait = Int("defaultTime2Wait", d.DefaultTime2Wait, 0, 3600),
            DefaultTime2Retain = Int("defaultTime2Retain", d.DefaultTime2Retain, 0, 3600),
            HeaderDigest = Digests("headerDigest", d.HeaderDigest),
            DataDigest = Digests("dataDigest", d.DataDigest),
            LoginTimeout = TimeSpan.FromSeconds(Int("loginTimeoutSeconds", (int)d.LoginTimeout.TotalSeconds, 1, 3600)),
            NopInInterval = TimeSpan.FromSeconds(Int("nopInIntervalSeconds", (int)d.NopInInterval.TotalSeconds, 0, 3600)),
            NopInTimeout = TimeSpan.FromSeconds(Int("nopInTimeoutSeconds", (int)d.NopInTimeout.TotalSeconds, 1, 3600)),
            MaxSessions = Int("maxSessions", d.MaxSessions, 1, 65535),
            MaxSessionBufferBytes = (long)Int("maxSessionBufferMiB", (int)(d.MaxSessionBufferBytes >> 20), 16, 65536) << 20,
        };
        if (o.FirstBurstLength > o.MaxBurstLength)
            errors.Add($"iscsi.firstBurstLength: {o.FirstBurstLength} exceeds maxBurstLength {o.MaxBurstLength}; make it smaller or equal.");
        return errors.Count > 0 ? (null, errors) : (o, errors);
    }
}
