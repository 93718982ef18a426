namespace HandlerRuntime.Sdk;

/// <summary>
/// The config of a filter handler, one that wraps another cfgstring:
/// <c>&lt;filter&gt;/[key=value[,key=value...]]@&lt;inner cfgstring&gt;</c>, for example
/// <c>error/rate=0.01,errno=EIO@file//var/lib/hrt/a.img</c> or, stacked,
/// <c>crypt/@cow/@file//images/base.img</c>. The first <c>@</c> ends the options, so the
/// inner cfgstring may hold any character (zbc's and ram's own <c>@</c> included).
/// </summary>
public sealed class FilterConfig
{
    private FilterConfig(IReadOnlyDictionary<string, string> options, string inner)
    {
        Options = options;
        Inner = inner;
    }

    /// <summary>The options, by key (keys are lower case).</summary>
    public IReadOnlyDictionary<string, string> Options { get; }

    /// <summary>The wrapped device's cfgstring.</summary>
    public string Inner { get; }

    /// <summary>
    /// Parses <paramref name="config"/>, accepting only <paramref name="keys"/>; on failure
    /// <paramref name="error"/> says what is wrong in one sentence that names <paramref name="filter"/>.
    /// </summary>
    public static bool TryParse(string filter, string config, IReadOnlyCollection<string> keys, out FilterConfig parsed, out string error)
    {
        parsed = null!;
        var at = config.IndexOf('@');
        if (at < 0)
        {
            error = $"{filter}/{config}: write {filter}/[options]@<cfgstring of the device to wrap>, for example {filter}/@file//var/lib/hrt/disk0.img.";
            return false;
        }
        var inner = config[(at + 1)..];
        if (!inner.Contains('/') || inner.StartsWith('/'))
        {
            error = $"{filter}: '{inner}' after the '@' is not a cfgstring; write <subtype>/<config>, for example file//var/lib/hrt/disk0.img.";
            return false;
        }
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var item in config[..at].Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = item.IndexOf('=');
            var key = (eq < 0 ? item : item[..eq]).Trim().ToLowerInvariant();
            if (!keys.Contains(key))
            {
                error = $"{filter}: unknown option '{key}'; it takes {(keys.Count == 0 ? "no options" : string.Join(", ", keys))}.";
                return false;
            }
            if (eq < 0 || eq == item.Length - 1)
            {
                error = $"{filter}: option '{key}' has no value; write {key}=<value>.";
                return false;
            }
            if (!options.TryAdd(key, item[(eq + 1)..].Trim()))
            {
                error = $"{filter}: option '{key}' is given twice.";
                return false;
            }
        }
        parsed = new FilterConfig(options, inner);
        error = "";
        return true;
    }

    /// <summary>The option <paramref name="key"/>, or <paramref name="fallback"/> when absent.</summary>
    public string Get(string key, string fallback) => Options.TryGetValue(key, out var v) ? v : fallback;
}
