using System.Globalization;

namespace HandlerRuntime.Handlers.Shared;

/// <summary>
/// Option values shared by the filter handlers (error/, delay/, cow/, crypt/): sizes with
/// binary suffixes, milliseconds, rates. One source, linked into each filter's project, so that
/// every filter reads "64K" or "5%" the same way while each stays its own plugin.
/// </summary>
internal static class FilterOptions
{
    /// <summary>Bytes: a whole number with an optional K, M, G or T suffix (powers of 1024), e.g. 4096, 64K, 1M.</summary>
    public static bool TryBytes(string text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
            return false;
        var t = text.Trim();
        var shift = char.ToUpperInvariant(t[^1]) switch { 'K' => 10, 'M' => 20, 'G' => 30, 'T' => 40, _ => 0 };
        if (shift != 0)
            t = t[..^1];
        if (!long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > long.MaxValue >> shift)
            return false;
        bytes = n << shift;
        return true;
    }

    /// <summary>Milliseconds: a whole number from 0 to one hour.</summary>
    public static bool TryMilliseconds(string text, out int ms)
        => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ms) && ms <= 3_600_000;

    /// <summary>A share of operations: a number from 0 to 1 (0.25) or a percentage (25%).</summary>
    public static bool TryRate(string text, out double rate)
    {
        var percent = text.EndsWith('%');
        if (!double.TryParse(percent ? text[..^1] : text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out rate))
            return false;
        if (percent)
            rate /= 100;
        return rate is >= 0 and <= 1;
    }
}
