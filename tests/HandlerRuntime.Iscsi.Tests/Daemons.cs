using System.Text.Json.Nodes;

namespace HandlerRuntime.Iscsi.Tests;

/// <summary>Daemon set-ups the tests share: LUNs, target access, fabric options.</summary>
public static class Daemons
{
    public const string Target = HrtDaemon.DefaultTarget;

    /// <summary>A daemon serving <paramref name="luns"/> (name, cfgstring, size) as LUN 0, 1, ... of the default target.</summary>
    public static Task<HrtDaemon> StartAsync(IEnumerable<(string Name, string Cfgstring, string Size)> luns, Action<JsonObject>? configure = null)
        => HrtDaemon.StartAsync(config =>
        {
            var array = (JsonArray)config["luns"]!;
            var n = 0;
            foreach (var (name, cfg, size) in luns)
                array.Add(new JsonObject { ["name"] = name, ["cfgstring"] = cfg, ["size"] = size, ["lun"] = n++ });
            configure?.Invoke(config);
        });

    public static Task<HrtDaemon> StartRamAsync(string size = "64M", Action<JsonObject>? configure = null)
        => StartAsync([("r0", "ram/@", size)], configure);

    public static JsonObject TargetConfig(JsonObject config) => (JsonObject)((JsonArray)config["targets"]!)[0]!;

    public static JsonObject Iscsi(JsonObject config) => (JsonObject)config["iscsi"]!;

    public static string Tool(string name) => ProcessRunner.Require(name);

    public static async Task<ProcessResult> RunAsync(string tool, IEnumerable<string> args, IDictionary<string, string>? env = null, TimeSpan? timeout = null)
        => await ProcessRunner.RunAsync(Tool(tool), args, timeout ?? TimeSpan.FromMinutes(3), env);

    public static async Task<ProcessResult> RunOkAsync(string tool, IEnumerable<string> args, IDictionary<string, string>? env = null, TimeSpan? timeout = null)
    {
        var r = await RunAsync(tool, args, env, timeout);
        if (r.ExitCode != 0)
            throw new Xunit.Sdk.XunitException($"{tool} {string.Join(' ', args)} failed: {r}");
        return r;
    }

    /// <summary>qemu-io against an iSCSI URL; fails on any error line (qemu-io exits 0 even when a verify fails).</summary>
    public static Task<string> QemuIoAsync(string url, params string[] commands) => QemuIoAsync(["-f", "raw"], url, commands);

    /// <summary>qemu-io with block options instead of a URL (e.g. driver=iscsi,...,header-digest=crc32c).</summary>
    public static Task<string> QemuIoOptsAsync(string imageOpts, params string[] commands) => QemuIoAsync(["--image-opts"], imageOpts, commands);

    private static async Task<string> QemuIoAsync(string[] mode, string url, string[] commands)
    {
        var args = new List<string>(mode);
        foreach (var c in commands)
        {
            args.Add("-c");
            args.Add(c);
        }
        args.Add(url);
        var r = await RunOkAsync("qemu-io", args);
        var text = r.Output;
        if (text.Contains("Pattern verification failed", StringComparison.OrdinalIgnoreCase) || text.Contains("failed:", StringComparison.OrdinalIgnoreCase)
            || text.Contains("error", StringComparison.OrdinalIgnoreCase))
            throw new Xunit.Sdk.XunitException($"qemu-io reported a failure:\n{text}");
        return text;
    }
}
