namespace HandlerRuntime.TestSupport;

/// <summary>File comparisons for tests that check what a tool wrote or read back.</summary>
public static class Files
{
    /// <summary>Whether two files hold the same bytes (compared 1 MiB at a time).</summary>
    public static bool SameContent(string a, string b)
    {
        using var fa = File.OpenRead(a);
        using var fb = File.OpenRead(b);
        if (fa.Length != fb.Length)
            return false;
        var ba = new byte[1 << 20];
        var bb = new byte[1 << 20];
        while (true)
        {
            var n = fa.ReadAtLeast(ba, ba.Length, throwOnEndOfStream: false);
            var m = fb.ReadAtLeast(bb, bb.Length, throwOnEndOfStream: false);
            if (n != m || !ba.AsSpan(0, n).SequenceEqual(bb.AsSpan(0, m)))
                return false;
            if (n == 0)
                return true;
        }
    }
}
