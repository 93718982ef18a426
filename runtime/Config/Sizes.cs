using System.Globalization;

namespace HandlerRuntime.Config;

/// <summary>Sizes as people write them: 1048576, 512K, 256M, 1G, 2T, 10GiB (powers of 1024).</summary>
public static class Sizes
{
    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
            return false;
        var t = text.Trim();
        var i = 0;
        while (i < t.Length && char.IsAsciiDigit(t[i]))
            i++;
        if (i == 0 || !long.TryParse(t[..i], NumberStyles.None, CultureInfo.InvariantCulture, out var n))
            return false;
        var shift = t[i..].Trim().ToUpperInvariant() switch
        {
            "" or "B" => 0,
            "K" or "KB" or "KIB" => 10,
            "M" or "MB" or "MIB" => 20,
            "G" or "GB" or "GIB" => 30,
            "T" or "TB" or "TIB" => 40,
            "P" or "PB" or "PIB" => 50,
            _ => -1,
        };
        if (shift < 0 || n > long.MaxValue >> shift)
            return false;
        bytes = n << shift;
        return true;
    }

    public static long Parse(string text)
        => TryParse(text, out var b) ? b : throw new FormatException($"'{text}' is not a size; write bytes or a number with K, M, G or T, e.g. 256M.");

    /// <summary>Shortest exact form: 268435456 -> 256M.</summary>
    public static string Format(long bytes)
    {
        foreach (var (shift, unit) in new[] { (40, "T"), (30, "G"), (20, "M"), (10, "K") })
            if (bytes > 0 && bytes % (1L << shift) == 0)
                return $"{bytes >> shift}{unit}";
        return bytes.ToString(CultureInfo.InvariantCulture);
    }
}
