using System.Globalization;

namespace HandlerRuntime.Handlers.Qcow;

/// <summary>
/// The handler config: <c>/path/to/image[?option=value[&amp;option=value]]</c>.
/// Options: <c>cache=&lt;size&gt;</c>, the metadata (L2 and refcount block) cache, 64K to 1G,
/// default 4M. A path that itself contains '?' is written with a trailing '?'.
/// </summary>
internal sealed record QcowConfig(string Path, long CacheBytes)
{
    public const long DefaultCacheBytes = 4 << 20;
    public const long MinCacheBytes = 64 << 10;
    public const long MaxCacheBytes = 1L << 30;

    public static bool TryParse(string config, out QcowConfig? parsed, out string? error)
    {
        parsed = null;
        error = null;
        var path = config;
        var cache = DefaultCacheBytes;
        var q = config.LastIndexOf('?');
        if (q >= 0)
        {
            path = config[..q];
            foreach (var option in config[(q + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = option.IndexOf('=');
                var key = eq < 0 ? option : option[..eq];
                var value = eq < 0 ? "" : option[(eq + 1)..];
                switch (key)
                {
                    case "cache":
                        if (!TryParseSize(value, out cache) || cache < MinCacheBytes || cache > MaxCacheBytes)
                        {
                            error = $"cache={value} is not a size from 64K to 1G; write for example qcow//images/vm.qcow2?cache=16M.";
                            return false;
                        }
                        break;
                    default:
                        error = $"'{key}' is not a qcow option; the only option is cache=<size>, as in qcow//images/vm.qcow2?cache=16M.";
                        return false;
                }
            }
        }
        if (path.Length == 0 || path[0] != '/')
        {
            error = $"'{path}' is not an absolute path; write qcow//<absolute path of the image>, e.g. qcow//var/lib/hrt/vm.qcow2.";
            return false;
        }
        if (path.EndsWith('/'))
        {
            error = $"'{path}' names a directory; give the path of a qcow2 or qcow image file.";
            return false;
        }
        parsed = new QcowConfig(path, cache);
        return true;
    }

    /// <summary>Bytes, or a number with K, M or G (powers of 1024).</summary>
    private static bool TryParseSize(string text, out long bytes)
    {
        bytes = 0;
        var t = text.Trim().ToUpperInvariant();
        var shift = 0;
        if (t.Length > 0 && char.IsAsciiLetter(t[^1]))
        {
            shift = t[^1] switch { 'K' => 10, 'M' => 20, 'G' => 30, _ => -1 };
            t = t[..^1];
        }
        if (shift < 0 || t.Length == 0 || !long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > (long.MaxValue >> 31))
            return false;
        bytes = n << shift;
        return true;
    }
}
