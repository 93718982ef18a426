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

    public static Task<ProcessResult> RunAsync(string tool, IEnumerable<string> args, IDictionary<string, string>? env = null, TimeSpan? timeout = null)
        => Tools.RunAsync(tool, args, timeout, env);

    public static Task<ProcessResult> RunOkAsync(string tool, IEnumerable<string> args, IDictionary<string, string>? env = null, TimeSpan? timeout = null)
        => Tools.RunOkAsync(tool, args, timeout, env);

    /// <summary>qemu-io against an iSCSI URL.</summary>
    public static Task<string> QemuIoAsync(string url, params string[] commands) => Tools.QemuIoAsync(["-f", "raw"], url, commands);

    /// <summary>qemu-io with block options instead of a URL (e.g. driver=iscsi,...,header-digest=crc32c).</summary>
    public static Task<string> QemuIoOptsAsync(string imageOpts, params string[] commands) => Tools.QemuIoAsync(["--image-opts"], imageOpts, commands);
}
