using System.Diagnostics;
using System.Text;

namespace HandlerRuntime.TestSupport;

/// <summary>The result of running a program to completion.</summary>
public sealed record ProcessResult(int ExitCode, string StdOut, string StdErr)
{
    public string Output => StdOut + StdErr;

    public override string ToString() => $"exit {ExitCode}\n--- stdout ---\n{StdOut}\n--- stderr ---\n{StdErr}";
}

/// <summary>Runs external programs (hrt's CLI, qemu-img, libiscsi's tools) and collects their output.</summary>
public static class ProcessRunner
{
    public static async Task<ProcessResult> RunAsync(string file, IEnumerable<string> args, TimeSpan? timeout = null, IDictionary<string, string>? environment = null, string? stdin = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        if (environment is not null)
            foreach (var (k, v) in environment)
                psi.Environment[k] = v;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (stdin is not null)
        {
            await p.StandardInput.WriteAsync(stdin);
            p.StandardInput.Close();
        }
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(5));
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in {timeout}:\n{stdout}\n{stderr}");
        }
        p.WaitForExit(); // drain the output readers
        return new ProcessResult(p.ExitCode, stdout.ToString(), stderr.ToString());
    }

    public static Task<ProcessResult> RunAsync(string file, params string[] args) => RunAsync(file, args, null);

    /// <summary>Fails the test when an external tool is missing: tests/run.sh installs them, so absence is a setup bug, not a skip.</summary>
    public static string Require(string tool)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/sbin", "/sbin"]))
        {
            var path = Path.Combine(dir, tool);
            if (File.Exists(path))
                return path;
        }
        throw new InvalidOperationException($"{tool} is not installed; tests/run.sh installs the test dependencies (run it, or apt-get install the package that has {tool}).");
    }
}
