using System.Text;

namespace HandlerRuntime.Fabrics.Iscsi.Login;

/// <summary>
/// The key=value text of Login and Text PDUs (RFC 7143 6.1): UTF-8 pairs, each ended by
/// a NUL. Keys keep their order; a key sent twice is reported so the caller can refuse it.
/// </summary>
public static class TextKeys
{
    public const int MaxKeyLength = 63;
    public const int MaxValueLength = 8192;

    /// <summary>Parses a complete text; false (with a reason) when it is not well formed.</summary>
    public static bool TryParse(ReadOnlySpan<byte> data, List<KeyValuePair<string, string>> into, out string? error)
    {
        error = null;
        while (!data.IsEmpty)
        {
            var end = data.IndexOf((byte)0);
            var pair = end < 0 ? data : data[..end];
            data = end < 0 ? default : data[(end + 1)..];
            if (pair.IsEmpty)
                continue; // tolerate padding NULs
            var eq = pair.IndexOf((byte)'=');
            if (eq <= 0)
            {
                error = "a text key has no '='";
                return false;
            }
            if (eq > MaxKeyLength || pair.Length - eq - 1 > MaxValueLength)
            {
                error = "a text key or value is too long";
                return false;
            }
            var key = Encoding.UTF8.GetString(pair[..eq]);
            var value = Encoding.UTF8.GetString(pair[(eq + 1)..]);
            foreach (var kv in into)
                if (kv.Key == key)
                {
                    error = $"key {key} was sent twice";
                    return false;
                }
            into.Add(new(key, value));
        }
        return true;
    }

    /// <summary>Appends key=value and its NUL.</summary>
    public static void Append(List<byte> text, string key, string value)
    {
        text.AddRange(Encoding.UTF8.GetBytes(key));
        text.Add((byte)'=');
        text.AddRange(Encoding.UTF8.GetBytes(value));
        text.Add(0);
    }
}
