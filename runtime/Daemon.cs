using System.Reflection;
using HandlerRuntime.Config;
using HandlerRuntime.Control;
using HandlerRuntime.Fabrics;
using HandlerRuntime.Logging;
using HandlerRuntime.Luns;
using HandlerRuntime.Plugins;
using HandlerRuntime.Scsi;
using HandlerRuntime.Scsi.Reservations;
using HandlerRuntime.Sdk;
using Serilog;
using Serilog.Extensions.Logging;

namespace HandlerRuntime;

/// <summary>
/// `hrt serve`: owns the plugin host, the targets and LUNs, the fabrics, the control
/// API and the configuration, and applies configuration changes as diffs.
/// </summary>
public sealed class Daemon : IAsyncDisposable
{
    private readonly ConfigSource source;
    private readonly LogSetup logs;
    private readonly ILogger log;
    private readonly SemaphoreSlim reloadGate = new(1, 1);
    private readonly List<IFabric> fabrics = [];
    private readonly DateTimeOffset started = DateTimeOffset.UtcNow;
    private RuntimeSettings settings;
    private string lastRejectedHash = "";
    private ConfigWatcher? watcher;
    private ControlServer? control;
    private Hosting.SystemdNotifier? systemd;
    private Metrics.MetricsServer? metrics;

    private Daemon(ConfigSource source, RuntimeSettings settings, LogSetup logs)
    {
        this.source = source;
        this.settings = settings;
        this.logs = logs;
        log = logs.Logger;
        Targets = new TargetRegistry();
        Plugins = new PluginHost(settings.HandlerPath, log) { Prepare = PrepareHandler };
        Luns = new LunRegistry(Plugins, Targets, settings.StateDirectory, log, new SerilogLoggerFactory(logs.Logger));
        Luns.DefinitionsChanged += PersistLuns;
    }

    public static string Version { get; } =
        typeof(Daemon).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0";

    public static string DefaultHandlerPath => Path.Combine(AppContext.BaseDirectory, "handlers");

    internal ILogger Log => log;

    public TargetRegistry Targets { get; }
    public PluginHost Plugins { get; }
    public LunRegistry Luns { get; }
    public RuntimeSettings Settings => settings;
    public IReadOnlyList<IFabric> Fabrics => fabrics;

    /// <summary>Starts everything; throws <see cref="StartupException"/> with a sentence when it cannot.</summary>
    public static async Task<Daemon> StartAsync(ConfigSource source, Func<Daemon, IEnumerable<IFabric>>? fabricFactory = null, bool console = true, CancellationToken ct = default)
    {
        var (config, error, _) = source.Load();
        if (config is null)
            throw new StartupException($"The configuration cannot be used: {error}");
        var (settings, errors) = RuntimeSettings.From(config, DefaultHandlerPath);
        if (settings is null)
            throw new StartupException($"The configuration {source.FilePath ?? "(built-in default)"} is invalid:\n  " + string.Join("\n  ", errors));

        var logs = new LogSetup(settings.LogLevel, console);
        var daemon = new Daemon(source, settings, logs);
        try
        {
            await daemon.StartPartsAsync(fabricFactory, ct);
            return daemon;
        }
        catch
        {
            await daemon.DisposeAsync();
            throw;
        }
    }

    private async Task StartPartsAsync(Func<Daemon, IEnumerable<IFabric>>? fabricFactory, CancellationToken ct)
    {
        if (logs.SetDirectory(settings.LogDirectory) is { } logError)
            log.Warning("Logging to the console only: {Reason}", logError);
        log.Information("hrt {Version} starting: config {Config}, handlers {HandlerPath}, state {StateDir}, log level {Level} ({Name})",
            Version, source.FilePath ?? "(built-in default)", settings.HandlerPath, settings.StateDirectory, settings.LogLevel, LogLevels.Name(settings.LogLevel));

        await Plugins.StartAsync();
        if (startupRefusals is { Count: > 0 })
            throw new StartupException("The configuration is invalid:\n  " + string.Join("\n  ", startupRefusals));
        startupRefusals = null;
        Luns.SanitizeBytesPerSecond = settings.SanitizeBytesPerSecond;
        ApplyTargets(settings);
        foreach (var action in await Luns.ApplyAsync(settings.Luns, ct))
            log.Debug("Startup: {Action}", action);

        foreach (var fabric in fabricFactory?.Invoke(this) ?? DefaultFabrics())
        {
            await fabric.StartAsync(settings, ct);
            fabrics.Add(fabric);
        }

        if (settings.MetricsListen is { } listen)
            metrics = await Metrics.MetricsServer.StartAsync(listen, this);
        try
        {
            control = await ControlServer.StartAsync(settings.ControlSocket, this);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            throw new StartupException($"The control socket {settings.ControlSocket} cannot be opened: {e.Message}");
        }
        if (source.FilePath is not null)
            watcher = new ConfigWatcher(source.FilePath, TimeSpan.FromMilliseconds(500), () => _ = ReloadAsync("file change"));
        else
            log.Warning("No config file: running on the built-in default; LUN changes will not survive a restart (give --config)");
        log.Information("hrt ready: control {Socket}, listening on {Endpoints}", settings.ControlSocket, fabrics.SelectMany(f => f.Endpoints));
        systemd = new Hosting.SystemdNotifier(log);
        systemd.Ready($"serving {Luns.Entries.Count} LUN(s) on {string.Join(", ", fabrics.SelectMany(f => f.Endpoints))}");
    }

    private IEnumerable<IFabric> DefaultFabrics() => [new Fabrics.Iscsi.IscsiFabric(Targets, log), new Fabrics.Nbd.NbdFabric(Targets, log), new Fabrics.Tcmu.TcmuFabric(Luns, Plugins, log)];

    /// <summary>
    /// Runs a LUN change asked for through the control API under the same lock as a reload,
    /// so that a reload that read the file just before the change was persisted cannot
    /// apply its stale list afterwards (and undo the change).
    /// </summary>
    public async Task<T> ChangeLunsAsync<T>(Func<Task<T>> change)
    {
        await reloadGate.WaitAsync();
        try
        {
            return await change();
        }
        finally
        {
            reloadGate.Release();
        }
    }

    /// <summary>Reads the configuration again and applies what changed. A bad file changes nothing and is reported once.</summary>
    public async Task<ReloadDto> ReloadAsync(string trigger)
    {
        await reloadGate.WaitAsync();
        systemd?.Reloading();
        try
        {
            var (config, error, hash) = source.Load();
            IReadOnlyList<string> errors = error is null ? [] : [error];
            RuntimeSettings? next = null;
            if (config is not null)
                (next, errors) = RuntimeSettings.From(config, DefaultHandlerPath);
            if (next is null)
            {
                if (hash != lastRejectedHash || trigger != "file change")
                    log.Error("Configuration reload ({Trigger}) refused, the previous configuration stays in force: {Errors}", trigger, string.Join(" ", errors));
                lastRejectedHash = hash;
                return new ReloadDto(false, [], errors);
            }
            if (CheckHandlerSettings(next) is { Count: > 0 } refused)
            {
                log.Error("Configuration reload ({Trigger}) refused, the previous configuration stays in force: {Errors}", trigger, string.Join(" ", refused));
                lastRejectedHash = hash;
                return new ReloadDto(false, [], refused);
            }
            lastRejectedHash = "";
            var actions = await ApplyAsync(next);
            log.Information("Configuration reloaded ({Trigger}): {Actions}", trigger, actions.Count == 0 ? "no changes" : string.Join("; ", actions));
            return new ReloadDto(true, actions, []);
        }
        finally
        {
            systemd?.Ready($"serving {Luns.Entries.Count} LUN(s); configuration reloaded ({trigger})");
            reloadGate.Release();
        }
    }

    private async Task<List<string>> ApplyAsync(RuntimeSettings next)
    {
        var actions = new List<string>();
        var previous = settings;
        if (next.LogLevel != previous.LogLevel)
        {
            logs.Level = next.LogLevel;
            actions.Add($"log level {LogLevels.Name(next.LogLevel)}");
        }
        if (next.LogDirectory != previous.LogDirectory)
        {
            if (logs.SetDirectory(next.LogDirectory) is { } e)
                log.Error("Log directory unchanged: {Reason}", e);
            else
                actions.Add($"log file {logs.LogFile}");
        }
        foreach (var (name, value, now) in new[] { ("handlerPath", previous.HandlerPath, next.HandlerPath), ("stateDir", previous.StateDirectory, next.StateDirectory), ("control", previous.ControlSocket, next.ControlSocket) })
            if (value != now)
                log.Warning("{Setting} changed to {Value}; it takes effect at the next restart", name, now);
        if (next.SanitizeBytesPerSecond != previous.SanitizeBytesPerSecond)
        {
            Luns.SanitizeBytesPerSecond = next.SanitizeBytesPerSecond;
            actions.Add($"sanitize rate {Sizes.Format(next.SanitizeBytesPerSecond)}/s");
        }
        if (next.MetricsListen != previous.MetricsListen)
        {
            if (metrics is not null)
                await metrics.DisposeAsync();
            metrics = null;
            try
            {
                if (next.MetricsListen is { } listen)
                    metrics = await Metrics.MetricsServer.StartAsync(listen, this);
                actions.Add(next.MetricsListen is null ? "metrics endpoint closed" : $"metrics endpoint on {next.MetricsListen}");
            }
            catch (StartupException e)
            {
                log.Error("{Reason}", e.Message);
            }
        }
        ApplyTargets(next);
        settings = next with { HandlerPath = previous.HandlerPath, StateDirectory = previous.StateDirectory, ControlSocket = previous.ControlSocket };
        foreach (var handler in Plugins.Plugins.SelectMany(p => p.Handlers).Where(h => h is IHandlerSettings))
            if (previous.HandlerSettings(handler.Subtype)?.ToJsonString() != next.HandlerSettings(handler.Subtype)?.ToJsonString())
            {
                if (ApplyHandlerSettings(handler, next) is { } refused) // checked before: only a handler that throws gets here
                    log.Error("Handler {Subtype} did not take its new settings: {Reason}", handler.Subtype, refused);
                else
                    actions.Add($"settings of handler {handler.Subtype}");
            }
        actions.AddRange(await Luns.ApplyAsync(next.Luns, CancellationToken.None));
        foreach (var f in fabrics)
            await f.ApplyAsync(settings);
        return actions;
    }

    /// <summary>Why the loaded handlers refuse their settings in <paramref name="s"/>; empty when they take them.</summary>
    private List<string> CheckHandlerSettings(RuntimeSettings s)
    {
        var errors = new List<string>();
        foreach (var handler in Plugins.Plugins.SelectMany(p => p.Handlers))
            if (handler is IHandlerSettings own && own.CheckSettings(s.HandlerSettings(handler.Subtype)) is { IsValid: false } bad)
                errors.Add($"handlers.{handler.Subtype}: {bad.Reason}");
        return errors;
    }

    private List<string>? startupRefusals = [];

    /// <summary>Readies a handler of a newly loaded plugin; at startup a refusal of its settings stops the daemon.</summary>
    private string? PrepareHandler(IHandler handler)
    {
        if (ApplyHandlerSettings(handler, settings) is not { } refused)
            return null;
        var why = $"handlers.{handler.Subtype}: {refused}";
        startupRefusals?.Add(why);
        return why;
    }

    /// <summary>Gives a handler its settings from <paramref name="s"/>; returns why it refused them, or null.</summary>
    private string? ApplyHandlerSettings(IHandler handler, RuntimeSettings s)
    {
        if (handler is not IHandlerSettings own)
            return null;
        var mine = s.HandlerSettings(handler.Subtype);
        try
        {
            if (own.CheckSettings(mine) is { IsValid: false } bad)
                return bad.Reason;
            own.ApplySettings(mine);
            return null;
        }
        catch (Exception e)
        {
            log.Error(e, "Handler {Subtype} failed while taking its settings", handler.Subtype);
            return $"it failed while taking them: {e.Message}";
        }
    }

    /// <summary>Runs a handler's own verb (`hrt &lt;subtype&gt; &lt;verb&gt;`).</summary>
    public async Task<HandlerCommandResult> RunHandlerCommandAsync(string subtype, string verb, IReadOnlyList<string> arguments, CancellationToken ct)
    {
        if (!Plugins.TryGetHandler(subtype, out var handler, out _))
            throw new LunException(Luns.NoHandlerMessage(subtype), LunError.NotFound);
        if (handler is not IHandlerCommands commands)
            return new HandlerCommandResult(false, $"The {subtype} handler has no verbs of its own; `hrt handlers` lists those that do.");
        if (!commands.Verbs.Any(v => v.Name == verb))
            return new HandlerCommandResult(false, $"The {subtype} handler has no verb '{verb}'; it has {string.Join(", ", commands.Verbs.Select(v => v.Name))}.");
        return await commands.RunAsync(verb, arguments, ct);
    }

    private void ApplyTargets(RuntimeSettings s)
    {
        foreach (var t in s.Targets)
            Targets.GetOrAdd(t.Name).Access = t.Access;
        foreach (var t in Targets.All)
            if (!s.Targets.Any(x => x.Name.Equals(t.Name, StringComparison.OrdinalIgnoreCase)))
            {
                t.Access = TargetAccess.Open;
                Targets.TryRemove(t.Name);
            }
    }

    private void PersistLuns()
    {
        if (source.FilePath is null)
            return;
        try
        {
            ConfigStore.SaveLuns(source.FilePath, Luns.Definitions);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
        {
            log.Error("LUN definitions could not be written to {File}: {Reason}; they will not survive a restart", source.FilePath, e.Message);
        }
    }

    // ---- views for the control API ----

    public StatusDto Status()
    {
        var handlerStatus = Luns.Entries.Where(e => e.Lun.Device.Status is not null)
            .Select(e => new LunStatusDto(e.Name, e.Lun.Device.Status!.GetStatus())).ToList();
        return new StatusDto(Version, Environment.ProcessId, (long)(DateTimeOffset.UtcNow - started).TotalSeconds, source.FilePath,
            logs.Level, LogLevels.Name(logs.Level), logs.LogFile, settings.HandlerPath, settings.StateDirectory, settings.ControlSocket,
            fabrics.SelectMany(f => f.Endpoints).ToList(), Luns.Entries.Count, Luns.Waiting.Count,
            fabrics.Sum(f => f.Sessions.Count), Plugins.Plugins.Count, handlerStatus,
            new GcDto(GC.GetTotalAllocatedBytes(precise: true), GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalPauseDuration().TotalMilliseconds),
            fabrics.Sum(f => f.ConnectionCount));
    }

    public IReadOnlyList<HandlerDto> Handlers()
        => Plugins.Plugins.SelectMany(p => p.Handlers.Select(h => new HandlerDto(h.Subtype, p.Name, p.Version, p.Folder, h.ConfigHelp)
            {
                Verbs = h is IHandlerCommands c ? c.Verbs : [],
            }))
            .OrderBy(h => h.Subtype, StringComparer.Ordinal).ToList();

    public IReadOnlyList<LunDto> LunList()
        => Luns.Entries.Select(ToDto)
            .Concat(Luns.Waiting.Select(w => new LunDto(w.Definition.Name, w.Definition.Cfgstring, w.Definition.Size, w.Definition.BlockSize,
                w.Definition.Target ?? Targets.DefaultName, w.Definition.Lun, w.Definition.WriteCache, w.Definition.ReadOnly, "waiting", w.Reason, null, null, null, null)))
            .OrderBy(l => l.Name, StringComparer.Ordinal).ToList();

    public static LunDto ToDto(LunEntry e) => new(e.Name, e.Definition.Cfgstring, e.SizeBytes, e.Lun.BlockSize, e.Target.Name, e.Number,
        e.Lun.WriteCacheEnabled, e.Definition.ReadOnly, "serving", null, e.Handler.Subtype, e.Plugin.Name, e.Lun.Identity.Serial, e.Lun.Identity.Wwn, e.Definition.Removable)
    {
        Reservations = ReservationsOf(e.Lun),
        Alua = Scsi.Alua.AluaStates.Name(e.Lun.AccessState),
        PhysicalBlockSize = e.Lun.BlockSize << e.Lun.Geometry.PhysicalBlockExponent,
    };

    private static ReservationsDto ReservationsOf(ScsiLun lun)
    {
        var state = lun.Reservations.State;
        return new ReservationsDto(state.Generation, state.Aptpl,
            state.Registrations.Select(r => new RegistrationDto(r.Nexus.InitiatorPort ?? r.Nexus.InitiatorName, r.Nexus.TargetPort ?? "all",
                $"0x{r.Key:x16}", state.HoldsReservation(r))).ToList(),
            state.Reservation?.Type.Describe(), lun.Reservations.Spc2Holder?.InitiatorPort);
    }

    public LsDto Ls()
    {
        var luns = LunList();
        var sessions = fabrics.SelectMany(f => f.Sessions).ToList();
        // Fabric-owned LUNs (TCMU devices) live in targets of their fabric, not of the registry.
        var all = Targets.All.Concat(Luns.Entries.Where(e => e.Fabric is not null).Select(e => e.Target)).Distinct();
        return new LsDto(fabrics.SelectMany(f => f.Endpoints).ToList(),
            all.OrderBy(t => t.Name, StringComparer.Ordinal).Select(t => new TargetDto(t.Name, t.Access.AllowedInitiators,
                t.Access.Chap is not null, t.Access.Chap?.MutualUser is not null,
                luns.Where(l => string.Equals(l.Target, t.Name, StringComparison.OrdinalIgnoreCase)).OrderBy(l => l.Lun).ToList(),
                sessions.Where(s => string.Equals(s.Target, t.Name, StringComparison.OrdinalIgnoreCase)).ToList())).ToList());
    }

    /// <summary>Every LUN's statistics now (`hrt stats` takes two and shows the rates between them).</summary>
    public StatsDto Stats()
        => new(System.Diagnostics.Stopwatch.GetTimestamp() / (double)System.Diagnostics.Stopwatch.Frequency,
            Luns.Entries.Select(e =>
            {
                var s = e.Lun.Stats;
                KindStatsDto Of(Metrics.CommandKind k) { var x = s.Of(k); return new(x.Count, x.Bytes, x.LatencySeconds, x.Buckets()); }
                return new LunStatsDto(e.Name, Of(Metrics.CommandKind.Read), Of(Metrics.CommandKind.Write), Of(Metrics.CommandKind.Other), s.InFlight,
                    Enum.GetValues<SenseKey>().Where(k => s.SenseKeyCount(k) > 0).ToDictionary(k => k.ToString(), s.SenseKeyCount),
                    s.Busy + s.TaskSetFull + s.ReservationConflicts + s.Aborted);
            }).ToList(), Metrics.LunStats.LatencyBucketSeconds);

    public LogLevelDto GetLogLevel() => new(logs.Level, LogLevels.Name(logs.Level));

    public LogLevelDto SetLogLevel(string level)
    {
        var n = LogLevels.Parse(level);
        logs.Level = n;
        log.Information("Log level set to {Level} ({Name}) by hrt log-level", n, LogLevels.Name(n));
        return GetLogLevel();
    }

    public async ValueTask DisposeAsync()
    {
        log.Information("hrt stopping");
        systemd?.Stopping();
        watcher?.Dispose();
        if (control is not null)
            await control.DisposeAsync();
        if (metrics is not null)
            await metrics.DisposeAsync();
        foreach (var f in fabrics)
            await f.DisposeAsync();
        await Luns.DisposeAsync();
        await Plugins.DisposeAsync();
        systemd?.Dispose();
        logs.Dispose();
    }
}

/// <summary>The daemon cannot start; the message says why, for the user.</summary>
public sealed class StartupException(string message) : Exception(message);
