using System.Net;
using Microsoft.Extensions.Configuration;

namespace HandlerRuntime.Fabrics.Nbd;

/// <summary>
/// The NBD fabric's settings, from the <c>nbd</c> section of hrt.json: where it listens,
/// which LUNs it exports and to whom, TLS, and the limits that keep one client from taking
/// the server's memory. Every problem is one sentence naming the key; the whole section is
/// then refused (at startup the daemon does not start, at a reload the previous settings stay).
/// </summary>
public sealed record NbdOptions
{
    public const string DefaultListen = "127.0.0.1:10809";

    /// <summary>Addresses to listen on; empty turns the fabric off.</summary>
    public IReadOnlyList<string> Listen { get; init; } = [DefaultListen];

    /// <summary>The exported LUNs; null exports every LUN, named after it.</summary>
    public IReadOnlyList<NbdExportRule>? Exports { get; init; }

    /// <summary>The LUN the empty export name ("") means; null: the first export.</summary>
    public string? DefaultExport { get; init; }

    /// <summary>Client addresses that may connect at all; empty allows any.</summary>
    public AddressList Allow { get; init; } = AddressList.Any;

    /// <summary>TLS, or null when STARTTLS is refused.</summary>
    public NbdTlsSettings? Tls { get; init; }

    public int MaxConnections { get; init; } = 256;

    /// <summary>The largest READ or WRITE payload (advertised as the maximum block size, capped by the LUN's own limit).</summary>
    public int MaxRequestBytes { get; init; } = 32 << 20;

    /// <summary>Payload bytes of one connection's requests in flight before its reader stops taking more.</summary>
    public long MaxInFlightBytes { get; init; } = 128L << 20;

    /// <summary>Requests of one connection in flight before its reader stops taking more.</summary>
    public int MaxInFlightRequests { get; init; } = 256;

    /// <summary>Time from accept to the end of negotiation (GO or EXPORT_NAME) before the connection is dropped.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Options one connection may send before it is dropped (nbdkit's limit is 32; LIST adds one per export).</summary>
    public int MaxOptions { get; init; } = 32;

    public static NbdOptions Default { get; } = new();

    /// <summary>Equal when every setting is (lists compared item by item), so a reload that changes nothing says so.</summary>
    public bool Equals(NbdOptions? other)
        => other is not null && Listen.SequenceEqual(other.Listen, StringComparer.OrdinalIgnoreCase)
           && (Exports is null ? other.Exports is null : other.Exports is not null && Exports.SequenceEqual(other.Exports))
           && DefaultExport == other.DefaultExport && Allow.Equals(other.Allow) && Tls == other.Tls
           && MaxConnections == other.MaxConnections && MaxRequestBytes == other.MaxRequestBytes && MaxInFlightBytes == other.MaxInFlightBytes
           && MaxInFlightRequests == other.MaxInFlightRequests && HandshakeTimeout == other.HandshakeTimeout && MaxOptions == other.MaxOptions;

    public override int GetHashCode() => HashCode.Combine(Listen.Count, Exports?.Count, DefaultExport, MaxConnections);

    /// <summary>Reads the section; every problem is one sentence naming the key.</summary>
    public static (NbdOptions? Options, IReadOnlyList<string> Errors) From(IConfiguration? section)
    {
        var errors = new List<string>();
        var d = Default;
        if (section is null || !section.GetChildren().Any())
            return (d, errors);
        int Int(string key, int fallback, int min, int max)
        {
            var text = section[key];
            if (text is null)
                return fallback;
            if (int.TryParse(text, out var v) && v >= min && v <= max)
                return v;
            errors.Add($"nbd.{key}: '{text}' is not a whole number from {min} to {max}.");
            return fallback;
        }
        bool Bool(IConfiguration s, string key, string where, bool fallback)
        {
            var text = s[key];
            if (text is null)
                return fallback;
            if (bool.TryParse(text, out var v))
                return v;
            errors.Add($"{where}.{key}: '{text}' is not true or false.");
            return fallback;
        }

        var listen = d.Listen;
        var listenSection = section.GetSection("listen");
        if (listenSection.Exists())
        {
            var values = listenSection.Value is { Length: > 0 } single ? [single] : listenSection.GetChildren().Select(c => c.Value ?? "").ToList();
            foreach (var v in values)
                if (!TryParseEndPoint(v, out _))
                    errors.Add($"nbd.listen: '{v}' is not an address:port (for example 127.0.0.1:10809 or [::1]:10809).");
            listen = values.Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        }

        var allow = ParseAddresses(section.GetSection("allow"), "nbd.allow", errors);

        List<NbdExportRule>? exports = null;
        var exportsSection = section.GetSection("exports");
        if (exportsSection.Exists())
        {
            exports = [];
            var i = 0;
            foreach (var e in exportsSection.GetChildren())
            {
                var where = $"nbd.exports[{i++}]";
                NbdExportRule rule;
                if (!e.GetChildren().Any())
                {
                    if (string.IsNullOrWhiteSpace(e.Value))
                    {
                        errors.Add($"{where}: give a LUN name, or an object with \"lun\" (and optionally \"allow\", \"readOnly\", \"description\").");
                        continue;
                    }
                    rule = new NbdExportRule(e.Value);
                }
                else
                {
                    var lun = e["lun"];
                    if (string.IsNullOrWhiteSpace(lun))
                    {
                        errors.Add($"{where}.lun: name the LUN to export.");
                        continue;
                    }
                    var description = e["description"];
                    if (description is { Length: > NbdProtocol.MaxStringLength })
                        errors.Add($"{where}.description: at most {NbdProtocol.MaxStringLength} characters.");
                    rule = new NbdExportRule(lun)
                    {
                        Allow = ParseAddresses(e.GetSection("allow"), $"{where}.allow", errors),
                        ReadOnly = Bool(e, "readOnly", where, false),
                        Description = description,
                    };
                }
                if (System.Text.Encoding.UTF8.GetByteCount(rule.Lun) > NbdProtocol.MaxStringLength)
                    errors.Add($"{where}: a LUN name longer than {NbdProtocol.MaxStringLength} bytes cannot be an NBD export name.");
                if (exports.Any(x => x.Lun == rule.Lun))
                    errors.Add($"{where}: LUN {rule.Lun} is listed twice; list each export once.");
                exports.Add(rule);
            }
        }

        var defaultExport = section["defaultExport"] is { Length: > 0 } de ? de : null;
        if (defaultExport is not null && exports is not null && !exports.Any(x => x.Lun == defaultExport))
            errors.Add($"nbd.defaultExport: '{defaultExport}' is not among nbd.exports; add it there or name one of them.");

        NbdTlsSettings? tls = null;
        var tlsSection = section.GetSection("tls");
        if (tlsSection.GetChildren().Any())
        {
            var (cert, key, ca) = (tlsSection["certificate"], tlsSection["key"], tlsSection["clientCa"]);
            var required = Bool(tlsSection, "required", "nbd.tls", false);
            if (string.IsNullOrWhiteSpace(cert) || string.IsNullOrWhiteSpace(key))
                errors.Add("nbd.tls: give both certificate and key (PEM files), or leave the tls section out to refuse STARTTLS.");
            else
            {
                tls = new NbdTlsSettings(cert, key, string.IsNullOrWhiteSpace(ca) ? null : ca, required);
                errors.AddRange(NbdTls.Check(tls));
            }
        }

        var o = new NbdOptions
        {
            Listen = listen,
            Exports = exports,
            DefaultExport = defaultExport,
            Allow = allow,
            Tls = tls,
            MaxConnections = Int("maxConnections", d.MaxConnections, 1, 65535),
            MaxRequestBytes = Int("maxRequestMiB", d.MaxRequestBytes >> 20, 1, 32) << 20,
            MaxInFlightBytes = (long)Int("maxInFlightMiB", (int)(d.MaxInFlightBytes >> 20), 32, 65536) << 20,
            MaxInFlightRequests = Int("maxInFlightRequests", d.MaxInFlightRequests, 1, 16384),
            HandshakeTimeout = TimeSpan.FromSeconds(Int("handshakeTimeoutSeconds", (int)d.HandshakeTimeout.TotalSeconds, 1, 3600)),
            MaxOptions = Int("maxOptions", d.MaxOptions, 4, 4096),
        };
        return errors.Count > 0 ? (null, errors) : (o, errors);
    }

    private static AddressList ParseAddresses(IConfigurationSection s, string where, List<string> errors)
    {
        if (!s.Exists())
            return AddressList.Any;
        var values = s.Value is { Length: > 0 } single ? [single] : s.GetChildren().Select(c => c.Value ?? "").ToList();
        var networks = new List<IPNetwork>();
        foreach (var v in values)
        {
            if (AddressList.TryParseNetwork(v, out var n))
                networks.Add(n);
            else
                errors.Add($"{where}: '{v}' is not an address or network; write e.g. 127.0.0.1, 10.0.0.0/8 or ::1.");
        }
        return new AddressList(networks);
    }

    /// <summary>Parses address:port (the port may be left out: 10809); IPv6 in brackets.</summary>
    public static bool TryParseEndPoint(string? text, out IPEndPoint endPoint)
    {
        endPoint = null!;
        if (string.IsNullOrWhiteSpace(text))
            return false;
        var t = text.Trim();
        var host = t;
        var port = NbdProtocol.DefaultPort;
        var close = t.LastIndexOf(']');
        var colon = t.LastIndexOf(':');
        if (t.StartsWith('['))
        {
            if (close < 0)
                return false;
            host = t[1..close];
            if (close + 1 < t.Length)
            {
                if (t[close + 1] != ':' || !int.TryParse(t[(close + 2)..], out port))
                    return false;
            }
        }
        else if (colon > 0 && t.IndexOf(':') == colon)
        {
            host = t[..colon];
            if (!int.TryParse(t[(colon + 1)..], out port))
                return false;
        }
        if (port is <= 0 or > 65535)
            return false;
        IPAddress? address = host == "localhost" ? IPAddress.Loopback : null;
        if (address is null && !IPAddress.TryParse(host, out address))
            return false;
        endPoint = new IPEndPoint(address, port);
        return true;
    }
}

/// <summary>One exported LUN: its name (the export name), who may use it, and whether NBD clients may write.</summary>
public sealed record NbdExportRule(string Lun)
{
    public AddressList Allow { get; init; } = AddressList.Any;
    public bool ReadOnly { get; init; }
    public string? Description { get; init; }
}

/// <summary>TLS files and policy.</summary>
/// <param name="Certificate">The server certificate (PEM; may carry its chain).</param>
/// <param name="Key">Its private key (PEM).</param>
/// <param name="ClientCa">CA certificates (PEM) client certificates must chain to; null: no client certificate asked for.</param>
/// <param name="Required">Refuse every option but STARTTLS and ABORT before TLS (the protocol's FORCEDTLS mode).</param>
public sealed record NbdTlsSettings(string Certificate, string Key, string? ClientCa, bool Required);

/// <summary>Client addresses (single addresses or CIDR networks); empty means any.</summary>
public sealed class AddressList(IReadOnlyList<IPNetwork> networks)
{
    public static AddressList Any { get; } = new([]);

    public IReadOnlyList<IPNetwork> Networks { get; } = networks;

    public bool Allows(IPAddress address)
    {
        if (Networks.Count == 0)
            return true;
        if (address.IsIPv4MappedToIPv6)
            address = address.MapToIPv4();
        foreach (var n in Networks)
            if (n.Contains(address))
                return true;
        return false;
    }

    public static bool TryParseNetwork(string text, out IPNetwork network)
    {
        network = default;
        var t = text.Trim();
        if (IPNetwork.TryParse(t, out network))
            return true;
        if (!IPAddress.TryParse(t, out var address))
            return false;
        if (address.IsIPv4MappedToIPv6)
            address = address.MapToIPv4();
        network = new IPNetwork(address, address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128);
        return true;
    }

    public override string ToString() => Networks.Count == 0 ? "any" : string.Join(", ", Networks);

    public override bool Equals(object? obj) => obj is AddressList o && o.Networks.SequenceEqual(Networks);

    public override int GetHashCode() => Networks.Count;
}
