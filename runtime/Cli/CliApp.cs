using System.CommandLine;
using System.Runtime.InteropServices;
using HandlerRuntime.Config;
using HandlerRuntime.Control;
using HandlerRuntime.Logging;
using Spectre.Console;

namespace HandlerRuntime.Cli;

/// <summary>
/// `hrt`: `serve` runs the daemon; every other verb is a client of its control socket.
/// Human output uses tables and trees; `--json` prints the API's JSON.
/// </summary>
public static class CliApp
{
    private static readonly Option<string?> ControlOption = new("--control")
    {
        Description = $"Control socket (default: $HRT_CONTROL or {RuntimeSettings.DefaultControlSocket})",
        Recursive = true,
    };

    private static readonly Option<bool> JsonOption = new("--json") { Description = "Print JSON instead of tables", Recursive = true };

    public static RootCommand Build(Func<ServeOptions, CancellationToken, Task<int>> serve)
    {
        var root = new RootCommand("HandlerRuntime: a userspace SCSI storage runtime. `hrt serve` runs the daemon; the other verbs talk to it.");
        root.Add(ControlOption);
        root.Add(JsonOption);
        root.Add(ServeCommand(serve));
        root.Add(Verb("handlers", "List the loaded handlers and their cfgstring forms", async (c, r) =>
        {
            var (list, json) = await c.SendRawAsync<List<HandlerDto>>(HttpMethod.Get, "v1/handlers", null);
            if (Print(r, json)) return 0;
            var t = new Table().AddColumns("Subtype", "Plugin", "Version", "Config", "Verbs");
            foreach (var h in list)
                t.AddRow(Markup.Escape(h.Subtype), Markup.Escape(h.Plugin), Markup.Escape(h.Version), Markup.Escape(h.ConfigHelp),
                    Markup.Escape(string.Join(", ", h.Verbs.Select(v => v.Name))));
            AnsiConsole.Write(t);
            return 0;
        }));
        var cfg = new Argument<string>("cfgstring") { Description = "<subtype>/<handler config>, e.g. file//var/lib/hrt/disk0.img" };
        var reach = new Option<bool>("--reach") { Description = "Also check that the store answers (for handlers of remote stores, e.g. rbd); gives up after a few seconds" };
        root.Add(Verb("check-config", "Validate a cfgstring with its handler, without opening anything", async (c, r) =>
        {
            var (check, json) = await c.SendRawAsync<CheckConfigDto>(HttpMethod.Post, "v1/check-config", new CheckConfigRequest(r.GetValue(cfg)!, r.GetValue(reach)));
            if (!Print(r, json))
            {
                if (check.Valid)
                    Console.WriteLine($"{check.Cfgstring}: valid");
                else
                    await Console.Error.WriteLineAsync($"hrt: {check.Cfgstring}: {check.Reason}"); // a refusal, as every verb's
            }
            return check.Valid ? 0 : 1;
        }, cfg, reach));
        root.Add(LunCommand());
        root.Add(StatsCommand.Build(Verb, r => r.GetValue(JsonOption)));
        root.Add(Verb("ls", "Show targets, their LUNs and live sessions", async (c, r) =>
        {
            var (ls, json) = await c.SendRawAsync<LsDto>(HttpMethod.Get, "v1/ls", null);
            if (Print(r, json)) return 0;
            var tree = new Tree($"hrt [grey]({Markup.Escape(string.Join(", ", ls.Endpoints))})[/]");
            foreach (var t in ls.Targets)
            {
                var access = t.AllowedInitiators.Count == 0 ? "any initiator" : string.Join(", ", t.AllowedInitiators);
                var node = tree.AddNode($"[bold]{Markup.Escape(t.Name)}[/] [grey]({Markup.Escape(access)}{(t.Chap ? t.MutualChap ? ", mutual CHAP" : ", CHAP" : "")})[/]");
                var luns = node.AddNode("LUNs");
                foreach (var l in t.Luns)
                    luns.AddNode(Markup.Escape($"{l.Lun}: {l.Name}  {l.Cfgstring}  {Sizes.Format(l.Size)}  {l.BlockSize}B" + (l.State == "serving" ? "" : $"  [{l.State}: {l.Reason}]")));
                var sessions = node.AddNode("Sessions");
                foreach (var s in t.Sessions)
                    sessions.AddNode(Markup.Escape(s.Fabric == "nbd"
                        ? $"nbd {string.Join(", ", s.Connections)}  export {s.Details.GetValueOrDefault("export")}  {s.InitiatorPort}  TLS {s.Details.GetValueOrDefault("tls")}"
                        : $"{s.InitiatorPort}  {s.Connections.Count} connection(s) {string.Join(", ", s.Connections)}  digests {s.HeaderDigest}/{s.DataDigest}"));
            }
            AnsiConsole.Write(tree);
            return 0;
        }));
        var level = new Argument<string?>("level") { Description = LogLevels.Accepted, Arity = ArgumentArity.ZeroOrOne };
        root.Add(Verb("log-level", "Show or set the log level", async (c, r) =>
        {
            var wanted = r.GetValue(level);
            if (wanted is not null && !LogLevels.TryParse(wanted, out _))
                throw new CliException($"'{wanted}' is not a log level; use {LogLevels.Accepted}.");
            var (dto, json) = wanted is null
                ? await c.SendRawAsync<LogLevelDto>(HttpMethod.Get, "v1/log-level", null)
                : await c.SendRawAsync<LogLevelDto>(HttpMethod.Put, "v1/log-level", new LogLevelRequest(wanted));
            if (!Print(r, json))
                Console.WriteLine($"log level {dto.Level} ({dto.Name})");
            return 0;
        }, level));
        var config = new Command("config", "Configuration commands");
        config.Add(Verb("reload", "Read the config file again and apply the changes", async (c, r) =>
        {
            var (dto, json) = await c.SendRawAsync<ReloadDto>(HttpMethod.Post, "v1/config/reload", null);
            if (!Print(r, json))
            {
                if (!dto.Applied)
                    throw new CliException("The configuration was refused and the previous one stays in force: " + string.Join(" ", dto.Errors));
                Console.WriteLine(dto.Actions.Count == 0 ? "configuration reloaded: no changes" : "configuration reloaded: " + string.Join("; ", dto.Actions));
            }
            return dto.Applied ? 0 : 1;
        }));
        root.Add(config);
        root.Add(Verb("status", "Show the daemon's state", async (c, r) =>
        {
            var (s, json) = await c.SendRawAsync<StatusDto>(HttpMethod.Get, "v1/status", null);
            if (Print(r, json)) return 0;
            var grid = new Grid().AddColumn().AddColumn();
            void Row(string k, string v) => grid.AddRow($"[bold]{k}[/]", Markup.Escape(v));
            Row("version", s.Version);
            Row("pid", s.Pid.ToString());
            Row("uptime", TimeSpan.FromSeconds(s.UptimeSeconds).ToString());
            Row("config", s.ConfigFile ?? "(built-in default)");
            Row("log level", $"{s.LogLevel} ({s.LogLevelName})");
            Row("log file", s.LogFile ?? "(console only)");
            Row("handlers", $"{s.Plugins} plugin(s) in {s.HandlerPath}");
            Row("LUNs", s.WaitingLuns == 0 ? $"{s.Luns}" : $"{s.Luns} serving, {s.WaitingLuns} waiting");
            Row("sessions", $"{s.Sessions} ({s.Connections} connection(s) open)");
            Row("listening", string.Join(", ", s.Endpoints));
            if (s.Gc is { } gc)
                Row("gc", $"{gc.AllocatedBytes} bytes allocated, collections {gc.Gen0Collections}/{gc.Gen1Collections}/{gc.Gen2Collections} (gen 0/1/2), {gc.PauseMilliseconds:F0} ms paused");
            foreach (var h in s.Handlers)
                Row($"LUN {h.Lun}", h.Status.ToJsonString());
            AnsiConsole.Write(grid);
            return 0;
        }));
        return root;
    }

    private static Command ServeCommand(Func<ServeOptions, CancellationToken, Task<int>> serve)
    {
        var cmd = new Command("serve", "Run the daemon");
        var config = new Option<string?>("--config") { Description = "Config file (default: $HRT_CONFIG, ./conf/hrt.json, /etc/hrt/hrt.json, else the built-in default)" };
        var logDir = new Option<string?>("--log-dir") { Description = "Log directory (beats $HRT_LOGDIR and the config file; default /var/log)" };
        var logLevel = new Option<string?>("--log-level") { Description = LogLevels.Accepted };
        var handlerPath = new Option<string?>("--handler-path") { Description = "Folder of handler plugins (default: handlers/ beside hrt)" };
        var stateDir = new Option<string?>("--state-dir") { Description = $"Per-LUN state (default {RuntimeSettings.DefaultStateDirectory})" };
        var portal = new Option<string[]>("--portal") { Description = $"iSCSI portal address:port, repeatable (default {RuntimeSettings.DefaultPortal})", AllowMultipleArgumentsPerToken = false };
        var nbdListen = new Option<string[]>("--nbd-listen") { Description = $"NBD address:port, repeatable (default {Fabrics.Nbd.NbdOptions.DefaultListen})", AllowMultipleArgumentsPerToken = false };
        foreach (var o in new Option[] { config, logDir, logLevel, handlerPath, stateDir, portal, nbdListen })
            cmd.Add(o);
        cmd.SetAction(async (r, ct) =>
        {
            var overrides = new Dictionary<string, string?>();
            void Set(string key, string? value) { if (value is not null) overrides[key] = value; }
            Set("logDir", r.GetValue(logDir));
            Set("logLevel", r.GetValue(logLevel));
            Set("handlerPath", r.GetValue(handlerPath));
            Set("stateDir", r.GetValue(stateDir));
            Set("control", r.GetValue(ControlOption));
            var portals = r.GetValue(portal) ?? [];
            for (var i = 0; i < portals.Length; i++)
                overrides[$"iscsi:portals:{i}"] = portals[i];
            var nbd = r.GetValue(nbdListen) ?? [];
            for (var i = 0; i < nbd.Length; i++)
                overrides[$"nbd:listen:{i}"] = nbd[i];
            if (r.GetValue(logLevel) is { } l && !LogLevels.TryParse(l, out _))
            {
                await Console.Error.WriteLineAsync($"hrt: '{l}' is not a log level; use {LogLevels.Accepted}.");
                return 2;
            }
            return await serve(new ServeOptions(r.GetValue(config) ?? ConfigSource.DefaultFile(), overrides), ct);
        });
        return cmd;
    }

    private static Command LunCommand()
    {
        var lun = new Command("lun", "Create, delete, resize and list LUNs");
        var name = new Argument<string>("name") { Description = "LUN name (letters, digits, . _ : -)" };
        var cfg = new Argument<string>("cfgstring") { Description = "<subtype>/<handler config>" };
        var size = new Option<string?>("--size") { Description = "Size, e.g. 1G (default: from the backing store)" };
        var blockSize = new Option<int?>("--block-size") { Description = "Logical block size: 512, 1024, 2048 or 4096" };
        var target = new Option<string?>("--target") { Description = "Target IQN (default: the default target)" };
        var number = new Option<int?>("--lun") { Description = "LUN number (default: the lowest free)" };
        var noCache = new Option<bool>("--no-write-cache") { Description = "Write cache off: every write is durable before it completes" };
        var readOnly = new Option<bool>("--read-only") { Description = "Refuse writes" };
        var removable = new Option<bool>("--removable") { Description = "Removable medium: initiators can eject and load it (START STOP UNIT) and lock it (PREVENT ALLOW)" };
        var physical = new Option<string?>("--physical-block-size") { Description = "Physical block size to report, e.g. 4K (READ CAPACITY(16), block limits; UNMAP granularity follows)" };
        lun.Add(Verb("create", "Create a LUN", async (c, r) =>
        {
            long? bytes = null;
            if (r.GetValue(size) is { } s)
                bytes = Sizes.TryParse(s, out var b) ? b : throw new CliException($"'{s}' is not a size; write bytes or a number with K, M, G or T, e.g. 256M.");
            var req = new LunCreateRequest(r.GetValue(name)!, r.GetValue(cfg)!, bytes, r.GetValue(blockSize), r.GetValue(target), r.GetValue(number),
                !r.GetValue(noCache), r.GetValue(readOnly), r.GetValue(removable),
                r.GetValue(physical) is { } p ? (Sizes.TryParse(p, out var pb) && pb <= int.MaxValue ? (int)pb : throw new CliException($"'{p}' is not a size; write e.g. 4096 or 4K.")) : null);
            var (dto, json) = await c.SendRawAsync<LunDto>(HttpMethod.Post, "v1/luns", req);
            if (!Print(r, json))
                Console.WriteLine($"LUN {dto.Name} created: {Sizes.Format(dto.Size)} of {dto.Cfgstring}, {dto.Target} LUN {dto.Lun}, {dto.Wwn}");
            return 0;
        }, name, cfg, size, blockSize, target, number, noCache, readOnly, removable, physical));
        var delName = new Argument<string>("name");
        lun.Add(Verb("delete", "Delete a LUN (its data stays in the backing store)", async (c, r) =>
        {
            await c.SendRawAsync<object?>(HttpMethod.Delete, $"v1/luns/{Uri.EscapeDataString(r.GetValue(delName)!)}", null);
            if (!Print(r, "{}"))
                Console.WriteLine($"LUN {r.GetValue(delName)} deleted");
            return 0;
        }, delName));
        var resName = new Argument<string>("name");
        var newSize = new Argument<string>("size") { Description = "New size, e.g. 2G" };
        lun.Add(Verb("resize", "Change a LUN's size (initiators are told CAPACITY DATA HAS CHANGED)", async (c, r) =>
        {
            var text = r.GetValue(newSize)!;
            var bytes = Sizes.TryParse(text, out var b) ? b : throw new CliException($"'{text}' is not a size; write bytes or a number with K, M, G or T, e.g. 2G.");
            var (dto, json) = await c.SendRawAsync<LunDto>(HttpMethod.Post, $"v1/luns/{Uri.EscapeDataString(r.GetValue(resName)!)}/resize", new LunResizeRequest(bytes));
            if (!Print(r, json))
                Console.WriteLine($"LUN {dto.Name} is now {Sizes.Format(dto.Size)}");
            return 0;
        }, resName, newSize));
        var aluaName = new Argument<string>("name");
        var aluaState = new Argument<string>("state") { Description = Scsi.Alua.AluaStates.Accepted };
        lun.Add(Verb("alua", "Set a LUN's ALUA access state (an implicit transition, e.g. during failover); initiators are told", async (c, r) =>
        {
            var (dto, json) = await c.SendRawAsync<LunDto>(HttpMethod.Post, $"v1/luns/{Uri.EscapeDataString(r.GetValue(aluaName)!)}/alua", new LunAluaRequest(r.GetValue(aluaState)!));
            if (!Print(r, json))
                Console.WriteLine($"LUN {dto.Name} is now {dto.Alua}");
            return 0;
        }, aluaName, aluaState));
        lun.Add(Verb("list", "List LUNs", async (c, r) =>
        {
            var (list, json) = await c.SendRawAsync<List<LunDto>>(HttpMethod.Get, "v1/luns", null);
            if (Print(r, json)) return 0;
            var t = new Table().AddColumns("Name", "Cfgstring", "Size", "Block", "Target", "LUN", "WCE", "RO", "State");
            foreach (var l in list)
                t.AddRow(Markup.Escape(l.Name), Markup.Escape(l.Cfgstring), Sizes.Format(l.Size), l.BlockSize.ToString(), Markup.Escape(l.Target ?? ""),
                    l.Lun?.ToString() ?? "", l.WriteCache ? "on" : "off", l.ReadOnly ? "yes" : "no", Markup.Escape(l.State == "serving" ? "serving" : $"{l.State}: {l.Reason}"));
            AnsiConsole.Write(t);
            return 0;
        }));
        return lun;
    }

    private static Command Verb(string name, string description, Func<ControlClient, ParseResult, Task<int>> action, params Symbol[] symbols)
    {
        var cmd = new Command(name, description);
        foreach (var s in symbols)
        {
            if (s is Argument a) cmd.Add(a);
            else if (s is Option o) cmd.Add(o);
        }
        cmd.SetAction(async (r, _) =>
        {
            var socket = r.GetValue(ControlOption)
                ?? (Environment.GetEnvironmentVariable("HRT_CONTROL") is { Length: > 0 } env ? env : RuntimeSettings.DefaultControlSocket);
            using var client = new ControlClient(socket);
            try
            {
                return await action(client, r);
            }
            catch (CliException e)
            {
                if (r.GetValue(JsonOption))
                    Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(new ErrorDto(e.Message), ControlClient.Json));
                await Console.Error.WriteLineAsync($"hrt: {e.Message}");
                return 1;
            }
        });
        return cmd;
    }

    private static bool Print(ParseResult r, string json)
    {
        if (!r.GetValue(JsonOption))
            return false;
        Console.WriteLine(json);
        return true;
    }

    /// <summary>Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the configuration.</summary>
    public static async Task<int> ServeAsync(ServeOptions options, CancellationToken ct)
    {
        Fabrics.NetworkThreads.PreferInlineCompletions();
        Daemon daemon;
        try
        {
            daemon = await Daemon.StartAsync(new ConfigSource(options.ConfigFile, options.Overrides), fabricFactory: null, console: true, ct);
        }
        catch (StartupException e)
        {
            await Console.Error.WriteLineAsync($"hrt: {e.Message}");
            return 2;
        }
        var stop = new TaskCompletionSource();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
        using var hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c => { c.Cancel = true; _ = daemon.ReloadAsync("SIGHUP"); });
        using (ct.Register(() => stop.TrySetResult()))
            await stop.Task;
        await daemon.DisposeAsync();
        return 0;
    }
}

/// <summary>What `hrt serve` was given.</summary>
public sealed record ServeOptions(string? ConfigFile, IReadOnlyDictionary<string, string?> Overrides);
