using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;

namespace HandlerRuntime.TestSupport;

/// <summary>
/// A real `hrt serve` process for a test: its own config file, control socket, state and
/// log directories, iSCSI portal port and NBD port, all in a temporary directory. The CLI is run as
/// a separate process against it, exactly as a user would.
/// </summary>
public sealed class HrtDaemon : IAsyncDisposable
{
    public const string DefaultTarget = "iqn.2026-11.org.handler-runtime:default";

    private readonly TempDir dir;
    private readonly ProcessStartInfo startInfo;
    private readonly StringBuilder output = new();
    private Process process;

    private HrtDaemon(TempDir dir, ProcessStartInfo startInfo, int port, int nbdPort, string configPath, string? handlerPath)
    {
        this.dir = dir;
        this.startInfo = startInfo;
        Port = port;
        NbdPort = nbdPort;
        ConfigPath = configPath;
        HandlerPath = handlerPath ?? RepoPaths.Handlers;
        process = Launch();
    }

    private Process Launch()
    {
        var p = Process.Start(startInfo)!;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    /// <summary>Stops the daemon cleanly (or kills it) and starts it again with the same config, state and socket.</summary>
    public async Task RestartAsync(bool kill = false)
    {
        if (kill) Kill(); else await StopAsync();
        process.Dispose();
        lock (output) output.AppendLine("---- restart ----");
        process = Launch();
        await WaitReadyAsync(TimeSpan.FromSeconds(60));
    }

    public int Port { get; }

    /// <summary>The NBD port (nbd.listen), also a free one: daemons of parallel tests never share 10809.</summary>
    public int NbdPort { get; }
    public string ConfigPath { get; }
    public string HandlerPath { get; }
    public string Directory => dir.Path;
    public string ControlSocket => dir.File("hrt.sock");
    public string StateDirectory => dir.File("state");
    public string LogDirectory => dir.File("log");
    public string LogFile => Path.Combine(LogDirectory, "hrt.log");
    public int ProcessId => process.Id;
    public bool HasExited => process.HasExited;

    /// <summary>Everything the daemon printed to stdout and stderr so far.</summary>
    public string Output { get { lock (output) return output.ToString(); } }

    /// <summary>The iSCSI URL of a LUN number on a target.</summary>
    public string Url(int lun = 0, string target = DefaultTarget) => $"iscsi://127.0.0.1:{Port}/{target}/{lun}";

    /// <summary>The NBD URI of an export (a LUN name; "" for the default export).</summary>
    public string NbdUrl(string export = "") => $"nbd://127.0.0.1:{NbdPort}/{export}";

    public string File(string name) => dir.File(name);

    /// <summary>
    /// Starts a daemon. <paramref name="configure"/> edits the config JSON (created with
    /// no LUNs, the default target, a free portal port and log level info).
    /// </summary>
    /// <param name="configure">Edits the config JSON before the daemon starts.</param>
    /// <param name="handlerPath">A handler path instead of the bundled handlers.</param>
    /// <param name="extraArgs">More `hrt serve` arguments.</param>
    /// <param name="timeout">How long to wait for the control socket to answer.</param>
    /// <param name="environment">Extra environment variables for the daemon.</param>
    /// <param name="logDirArgument">False to leave --log-dir off the command line (the config or environment decides).</param>
    public static async Task<HrtDaemon> StartAsync(Action<JsonObject>? configure = null, string? handlerPath = null, IEnumerable<string>? extraArgs = null,
        TimeSpan? timeout = null, IDictionary<string, string>? environment = null, bool logDirArgument = true)
    {
        var dir = new TempDir("hrt-daemon");
        var port = FreePort.Next();
        var nbdPort = FreePort.Next();
        var config = new JsonObject
        {
            ["logLevel"] = "info",
            ["iscsi"] = new JsonObject { ["portals"] = new JsonArray($"127.0.0.1:{port}") },
            ["nbd"] = new JsonObject { ["listen"] = new JsonArray($"127.0.0.1:{nbdPort}") },
            ["targets"] = new JsonArray(new JsonObject { ["name"] = DefaultTarget, ["initiators"] = new JsonArray() }),
            ["luns"] = new JsonArray(),
        };
        configure?.Invoke(config);
        var configPath = dir.File("hrt.json");
        await System.IO.File.WriteAllTextAsync(configPath, config.ToJsonString(new() { WriteIndented = true }));

        var psi = new ProcessStartInfo(RepoPaths.Hrt)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "serve", "--config", configPath, "--control", dir.File("hrt.sock"), "--state-dir", dir.File("state") })
            psi.ArgumentList.Add(a);
        if (logDirArgument)
        {
            psi.ArgumentList.Add("--log-dir");
            psi.ArgumentList.Add(dir.File("log"));
        }
        if (handlerPath is not null)
        {
            psi.ArgumentList.Add("--handler-path");
            psi.ArgumentList.Add(handlerPath);
        }
        foreach (var a in extraArgs ?? [])
            psi.ArgumentList.Add(a);
        psi.Environment.Remove("HRT_CONTROL");
        psi.Environment.Remove("HRT_LOGDIR");
        psi.Environment.Remove("HRT_CONFIG");
        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
            psi.Environment[k] = v;
        var daemon = new HrtDaemon(dir, psi, port, nbdPort, configPath, handlerPath);
        await daemon.WaitReadyAsync(timeout ?? TimeSpan.FromSeconds(60));
        return daemon;
    }

    private async Task WaitReadyAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"hrt serve exited with {process.ExitCode}:\n{Output}");
            if (System.IO.File.Exists(ControlSocket) && (await CliAsync("status", "--json")).ExitCode == 0)
                return;
            await Task.Delay(100);
        }
        throw new TimeoutException($"hrt serve did not become ready in {timeout}:\n{Output}");
    }

    /// <summary>Runs `hrt &lt;args&gt; --control &lt;this daemon's socket&gt;`.</summary>
    public Task<ProcessResult> CliAsync(params string[] args)
        => ProcessRunner.RunAsync(RepoPaths.Hrt, args.Concat(["--control", ControlSocket]), TimeSpan.FromMinutes(2));

    /// <summary>Runs the CLI and fails with its output unless it exits 0.</summary>
    public async Task<string> CliOkAsync(params string[] args)
    {
        var r = await CliAsync(args);
        if (r.ExitCode != 0)
            throw new Xunit.Sdk.XunitException($"hrt {string.Join(' ', args)} failed: {r}");
        return r.StdOut;
    }

    /// <summary>Waits until <paramref name="condition"/> holds on the daemon's output, or fails with the output.</summary>
    public async Task WaitForOutputAsync(Func<string, bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (condition(Output))
                return;
            await Task.Delay(100);
        }
        throw new Xunit.Sdk.XunitException($"Timed out after {timeout} waiting for {what}. Daemon output:\n{Output}");
    }

    /// <summary>SIGTERM and wait: a clean shutdown.</summary>
    public async Task StopAsync()
    {
        if (process.HasExited)
            return;
        Signal(15);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(true);
        }
    }

    /// <summary>SIGKILL: a crash.</summary>
    public void Kill()
    {
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
        }
    }

    public void Signal(int signal) => kill(process.Id, signal);

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        process.Dispose();
        dir.Dispose();
    }
}
