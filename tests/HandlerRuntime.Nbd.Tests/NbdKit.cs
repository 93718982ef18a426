using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json.Nodes;

namespace HandlerRuntime.Nbd.Tests;

/// <summary>A LUN for a test daemon: name, cfgstring, size, and whether it is read-only.</summary>
public sealed record TestLun(string Name, string Cfgstring, string? Size = null, bool ReadOnly = false);

/// <summary>Daemons with NBD set up, and the NBD clients of Debian 12 run as a user runs them.</summary>
public static class NbdKit
{
    /// <summary>nbdsh runs the first python3 on PATH; Debian's has the nbd module, a pyenv one does not (fabrics-tcmu-nbd.md 4.2).</summary>
    private static readonly Dictionary<string, string> DebianPython = new() { ["PATH"] = "/usr/bin:" + Environment.GetEnvironmentVariable("PATH") };

    /// <summary>LIBNBD_DEBUG=1: libnbd traces the handshake, the server's error messages included.</summary>
    public static readonly Dictionary<string, string> Debug = new() { ["LIBNBD_DEBUG"] = "1" };

    /// <summary>A daemon serving <paramref name="luns"/> as LUN 0, 1, ... of the default target; <paramref name="nbd"/> edits the nbd section.</summary>
    public static Task<HrtDaemon> StartAsync(IEnumerable<TestLun> luns, Action<JsonObject>? nbd = null, Action<JsonObject>? configure = null)
        => HrtDaemon.StartAsync(config =>
        {
            var array = (JsonArray)config["luns"]!;
            var n = 0;
            foreach (var l in luns)
            {
                var o = new JsonObject { ["name"] = l.Name, ["cfgstring"] = l.Cfgstring, ["lun"] = n++ };
                if (l.Size is not null)
                    o["size"] = l.Size;
                if (l.ReadOnly)
                    o["readOnly"] = true;
                array.Add(o);
            }
            nbd?.Invoke((JsonObject)config["nbd"]!);
            configure?.Invoke(config);
        });

    public static Task<ProcessResult> RunAsync(string tool, IEnumerable<string> args, TimeSpan? timeout = null, IDictionary<string, string>? env = null)
        => Tools.RunAsync(tool, args, timeout, env);

    public static Task<ProcessResult> RunOkAsync(string tool, IEnumerable<string> args, TimeSpan? timeout = null, IDictionary<string, string>? env = null)
        => Tools.RunOkAsync(tool, args, timeout, env);

    /// <summary>`nbdinfo --json URI`: the first export's facts.</summary>
    public static async Task<JsonObject> InfoAsync(string uri, params string[] extra)
    {
        var r = await RunOkAsync("nbdinfo", ["--json", .. extra, uri]);
        return (JsonObject)JsonNode.Parse(r.StdOut)!["exports"]![0]!;
    }

    /// <summary>`nbdinfo --json --map URI` as (offset, length, type) extents.</summary>
    public static async Task<List<(long Offset, long Length, int Type)>> MapAsync(string uri)
    {
        var r = await RunOkAsync("nbdinfo", ["--json", "--map", uri]);
        return JsonNode.Parse(r.StdOut)!.AsArray().Select(e => ((long)e!["offset"]!, (long)e["length"]!, (int)e["type"]!)).ToList();
    }

    /// <summary>Runs a Python script in nbdsh against <paramref name="uri"/> (h is the connected handle); fails unless it exits 0.</summary>
    public static async Task<string> NbdshAsync(string uri, string script, params string[] before)
    {
        var r = await RunAsync("nbdsh", [.. before, "-u", uri, "-c", script], env: DebianPython);
        if (r.ExitCode != 0)
            throw new Xunit.Sdk.XunitException($"nbdsh failed: {r}");
        return r.StdOut;
    }

    /// <summary>Runs nbdsh with no URI (the script connects itself); returns the result whatever the exit status.</summary>
    public static Task<ProcessResult> NbdshRawAsync(string script) => RunAsync("nbdsh", ["-c", script], env: DebianPython);

    /// <summary>qemu-io on an NBD URI.</summary>
    public static Task<string> QemuIoAsync(string uri, params string[] commands) => Tools.QemuIoAsync(["-f", "raw"], uri, commands);

    /// <summary>A file of <paramref name="size"/> bytes with random data in the given MiB ranges and holes elsewhere.</summary>
    public static void SparseFile(string path, long size, params (int StartMiB, int Mib)[] data)
    {
        using var f = new FileStream(path, FileMode.Create, FileAccess.Write);
        f.SetLength(size);
        var buffer = new byte[1 << 20];
        foreach (var (start, mib) in data)
        {
            f.Position = (long)start << 20;
            for (var i = 0; i < mib; i++)
            {
                Random.Shared.NextBytes(buffer);
                f.Write(buffer);
            }
        }
    }

    /// <summary>Waits until the daemon reports <paramref name="count"/> live sessions (connections end asynchronously).</summary>
    public static async Task WaitForSessionsAsync(HrtDaemon d, int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        int now;
        do
        {
            now = (int)JsonNode.Parse(await d.CliOkAsync("status", "--json"))!["sessions"]!;
            if (now == count)
                return;
            await Task.Delay(100);
        }
        while (DateTime.UtcNow < deadline);
        throw new Xunit.Sdk.XunitException($"hrt status says {now} sessions, not {count}, after {timeout}:\n{await d.CliOkAsync("ls", "--json")}");
    }

    public static int FreePortNumber() => FreePort.Next();
}

/// <summary>A reference NBD server on a file: nbdkit's file plugin or qemu-nbd, for comparing outputs.</summary>
public sealed class PeerServer : IAsyncDisposable
{
    private readonly Process process;

    private PeerServer(Process process, int port, string export)
    {
        this.process = process;
        Url = $"nbd://127.0.0.1:{port}/{export}";
    }

    public string Url { get; }

    /// <summary>`nbdkit -f -i 127.0.0.1 -p PORT file FILE` (any export name reaches the file).</summary>
    public static Task<PeerServer> NbdkitAsync(string file, bool readOnly = false)
        => StartWithRetryAsync("nbdkit", port => ["-f", "-i", "127.0.0.1", "-p", port.ToString(), .. (readOnly ? new[] { "-r" } : []), "file", file], "");

    /// <summary>`qemu-nbd -b 127.0.0.1 -p PORT -f raw -x NAME -t -e 8 FILE`.</summary>
    public static Task<PeerServer> QemuNbdAsync(string file, string export)
        // -e 8: several clients at once (the default is one, and the readiness probe may still hold it).
        => StartWithRetryAsync("qemu-nbd", port => ["-b", "127.0.0.1", "-p", port.ToString(), "-f", "raw", "-x", export, "-t", "-e", "8", file], export);

    /// <summary>
    /// Starts the peer on a free port, again on another one if it dies while starting: on this
    /// shared machine PIDs wrap within seconds, and a signal some other program sends to a PID
    /// it once started has been seen to land on a peer just started (nbdkit exiting with 143,
    /// or with 0 after its SIGTERM handler). A peer that fails three times fails the test.
    /// </summary>
    private static async Task<PeerServer> StartWithRetryAsync(string tool, Func<int, List<string>> args, string export)
    {
        for (var attempt = 1; ; attempt++)
        {
            var port = FreePort.Next();
            try
            {
                return await StartAsync(tool, args(port), port, export);
            }
            catch (PeerExitedException) when (attempt < 3)
            {
            }
        }
    }

    private static async Task<PeerServer> StartAsync(string tool, List<string> args, int port, string export)
    {
        var psi = new ProcessStartInfo(ProcessRunner.Require(tool)) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var output = new System.Text.StringBuilder();
        p.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (DateTime.UtcNow < deadline)
        {
            if (p.HasExited)
            {
                p.WaitForExit();
                lock (output)
                    throw new PeerExitedException($"{tool} {string.Join(' ', args)} exited with {p.ExitCode}: {output}");
            }
            try
            {
                // Ready when the greeting comes: a bare connect can succeed with no one listening
                // (a loopback connect whose own ephemeral port is the target port meets itself).
                using var probe = new TcpClient();
                await probe.ConnectAsync("127.0.0.1", port);
                var magic = new byte[8];
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await probe.GetStream().ReadExactlyAsync(magic, cts.Token);
                if (magic.AsSpan().SequenceEqual("NBDMAGIC"u8))
                    return new PeerServer(p, port, export);
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
            {
            }
            await Task.Delay(50);
        }
        p.Kill(true);
        throw new TimeoutException($"{tool} did not listen on {port}");
    }

    public async ValueTask DisposeAsync()
    {
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
        process.Dispose();
    }
}

/// <summary>A reference server ended while starting; the message has its exit status and output.</summary>
public sealed class PeerExitedException(string message) : Exception(message);
