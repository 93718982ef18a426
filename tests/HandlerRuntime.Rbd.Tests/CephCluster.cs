using System.Text.Json.Nodes;

namespace HandlerRuntime.Rbd.Tests;

/// <summary>
/// A real single-node Ceph cluster for the rbd tests, brought up and torn down by
/// ../shared/tools/ceph-mini's own scripts in a directory and on monitor ports of its own (so it
/// never meets another run's cluster). When it cannot start here, every test is skipped with the
/// reason; it never pretends to pass.
/// </summary>
public sealed class CephCluster : IAsyncLifetime
{
    private readonly Dictionary<string, string> env = new();
    private int imageCount;

    public string Tools { get; } = FindTools();
    public string Directory { get; } = $"/var/tmp/hrt-rbd-test-{Environment.ProcessId}";
    public string Conf => Path.Combine(Directory, "ceph.conf");

    /// <summary>Why the cluster is not there, or null when it is.</summary>
    public string? Unavailable { get; private set; }

    /// <summary>Environment for the daemons and the rbd CLI: CEPH_CONF names this cluster.</summary>
    public IDictionary<string, string> Env => env;

    public async Task InitializeAsync()
    {
        env["CEPH_MINI_DIR"] = Directory;
        env["CEPH_MINI_MON_PORT"] = FreePort.Next().ToString();
        env["CEPH_MINI_MON_V1_PORT"] = FreePort.Next().ToString();
        env["CEPH_MINI_IMAGE"] = ""; // every test makes its own image: two writers of one image would trade its lock
        env["CEPH_MINI_OSD_SIZE"] = "3G";
        // Lands in [client]: lets a LUN ask for osd_op_timeout=5 (tcmu-runner's rule wants more than grace + interval).
        env["CEPH_MINI_EXTRA_CONF"] = "osd_heartbeat_grace = 3\nosd_heartbeat_interval = 1\n";
        if (!File.Exists(Path.Combine(Tools, "ceph-mini-up")))
        {
            Unavailable = $"ceph-mini is not at {Tools} (set CEPH_MINI_TOOLS)";
            return;
        }
        var install = await ProcessRunner.RunAsync(Path.Combine(Tools, "ceph-mini-install"), [], TimeSpan.FromMinutes(5), env);
        if (install.ExitCode != 0)
        {
            Unavailable = $"ceph-mini-install failed: {install.Output.Trim()}";
            return;
        }
        var up = await ProcessRunner.RunAsync(Path.Combine(Tools, "ceph-mini-up"), ["--fresh"], TimeSpan.FromMinutes(3), env);
        if (up.ExitCode != 0)
        {
            Unavailable = $"ceph-mini-up could not start a cluster: {up.StdErr.Trim()}";
            Console.WriteLine($"HandlerRuntime.Rbd.Tests: SKIPPING the Ceph tests: {Unavailable}");
            return;
        }
        env["CEPH_CONF"] = Conf;
    }

    public async Task DisposeAsync()
    {
        if (File.Exists(Path.Combine(Tools, "ceph-mini-down")))
            await ProcessRunner.RunAsync(Path.Combine(Tools, "ceph-mini-down"), [], TimeSpan.FromMinutes(1), env);
    }

    /// <summary>Skips the calling test, with the reason, when there is no cluster.</summary>
    public void Require() => Skip.If(Unavailable is not null, Unavailable);

    /// <summary>A fresh image name (the image itself is made by the caller or by a LUN created with a size).</summary>
    public string NewImage(string what) => $"{what}{Interlocked.Increment(ref imageCount)}";

    /// <summary>Runs the rbd CLI against this cluster and fails unless it exits 0.</summary>
    public async Task<string> RbdAsync(params string[] args)
    {
        var r = await ProcessRunner.RunAsync("/usr/bin/rbd", ["-c", Conf, .. args], TimeSpan.FromMinutes(2), env);
        if (r.ExitCode != 0)
            throw new Xunit.Sdk.XunitException($"rbd {string.Join(' ', args)} failed: {r}");
        return r.StdOut;
    }

    /// <summary>The image's bytes as `rbd export` writes them.</summary>
    public async Task<byte[]> ExportAsync(string image)
    {
        var file = Path.Combine(Path.GetTempPath(), $"hrt-rbd-export-{Guid.NewGuid():N}.raw");
        try
        {
            await RbdAsync("export", $"rbd/{image}", file);
            return await File.ReadAllBytesAsync(file);
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>A daemon whose handlers see this cluster (CEPH_CONF), serving the given LUNs.</summary>
    public Task<HrtDaemon> StartDaemonAsync(params (string Name, string Cfgstring, string? Size)[] luns)
        => HrtDaemon.StartAsync(config =>
        {
            var array = (JsonArray)config["luns"]!;
            var n = 0;
            foreach (var (name, cfg, size) in luns)
            {
                var lun = new JsonObject { ["name"] = name, ["cfgstring"] = cfg, ["lun"] = n++ };
                if (size is not null)
                    lun["size"] = size;
                array.Add(lun);
            }
        }, environment: new Dictionary<string, string> { ["CEPH_CONF"] = Conf });

    /// <summary>The OSD's pid, from ceph-mini's own pid file, checked against /proc so a recycled pid is never signalled.</summary>
    public int OsdPid()
    {
        var pid = int.Parse(File.ReadAllText(Path.Combine(Directory, "run", "osd.0.pid")).Trim());
        var cmdline = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ');
        Assert.True(cmdline.Contains("ceph-osd") && cmdline.Contains(Conf), $"pid {pid} is not this cluster's OSD: {cmdline}");
        return pid;
    }

    /// <summary>Starts osd.0 again, as ceph-mini-up starts it (daemonized; its pid file is rewritten).</summary>
    public async Task StartOsdAsync()
    {
        var r = await ProcessRunner.RunAsync("/usr/bin/ceph-osd", ["-c", Conf, "-i", "0"], TimeSpan.FromMinutes(1),
            new Dictionary<string, string>(env) { ["MALLOC_ARENA_MAX"] = "2" });
        Assert.True(r.ExitCode == 0, $"ceph-osd did not start: {r}");
    }

    private static string FindTools()
    {
        if (Environment.GetEnvironmentVariable("CEPH_MINI_TOOLS") is { Length: > 0 } given)
            return given;
        foreach (var candidate in new[] { Path.Combine(RepoPaths.Root, "..", "shared"), Path.Combine(RepoPaths.Root, "..", "..", "shared"), "/work/shared" })
        {
            var dir = Path.GetFullPath(Path.Combine(candidate, "tools", "ceph-mini"));
            if (System.IO.Directory.Exists(dir))
                return dir;
        }
        return Path.GetFullPath(Path.Combine(RepoPaths.Root, "..", "shared", "tools", "ceph-mini"));
    }
}

[CollectionDefinition("ceph")]
public sealed class CephCollection : ICollectionFixture<CephCluster>;
