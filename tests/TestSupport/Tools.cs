namespace HandlerRuntime.TestSupport;

/// <summary>
/// External tools by name (libiscsi's, QEMU's, libnbd's), run as a user runs them: a missing
/// tool fails the test (tests/run.sh installs them), a nonzero exit fails it with the output.
/// </summary>
public static class Tools
{
    public static Task<ProcessResult> RunAsync(string tool, IEnumerable<string> args, TimeSpan? timeout = null, IDictionary<string, string>? env = null)
        => ProcessRunner.RunAsync(ProcessRunner.Require(tool), args, timeout ?? TimeSpan.FromMinutes(3), env);

    public static async Task<ProcessResult> RunOkAsync(string tool, IEnumerable<string> args, TimeSpan? timeout = null, IDictionary<string, string>? env = null)
    {
        var r = await RunAsync(tool, args, timeout, env);
        if (r.ExitCode != 0)
            throw new Xunit.Sdk.XunitException($"{tool} {string.Join(' ', args)} failed: {r}");
        return r;
    }

    /// <summary>
    /// qemu-io <paramref name="options"/> -c ... <paramref name="target"/> (a file, a URL or
    /// --image-opts); fails on any error line, since qemu-io exits 0 even when a verify fails.
    /// </summary>
    public static async Task<string> QemuIoAsync(IEnumerable<string> options, string target, IEnumerable<string> commands)
    {
        var args = new List<string>(options);
        foreach (var c in commands)
        {
            args.Add("-c");
            args.Add(c);
        }
        args.Add(target);
        var text = (await RunOkAsync("qemu-io", args)).Output;
        if (text.Contains("failed", StringComparison.OrdinalIgnoreCase) || text.Contains("error", StringComparison.OrdinalIgnoreCase))
            throw new Xunit.Sdk.XunitException($"qemu-io {string.Join(' ', args)} reported a failure:\n{text}");
        return text;
    }
}
