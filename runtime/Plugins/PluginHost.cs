using System.Reflection;
using System.Security.Cryptography;
using HandlerRuntime.Sdk;
using Serilog;

namespace HandlerRuntime.Plugins;

/// <summary>
/// Finds handler plugins (one folder each under the handler path), loads each into its
/// own collectible context, and watches the path: a new folder is loaded (hot add), a
/// changed one is loaded beside the old, its LUNs are moved over, and the old context is
/// unloaded (hot upgrade). A plugin that fails to load, or claims a subtype another
/// plugin serves, is refused and the previous state stays in force.
/// </summary>
public sealed class PluginHost : IAsyncDisposable
{
    /// <summary>Moves the LUNs of one plugin version to another; returns an error sentence, or null when all moved.</summary>
    public delegate Task<string?> PluginSwitcher(LoadedPlugin from, LoadedPlugin to);

    // The watcher notices a dropped-in folder at once; the rescan is the fallback for filesystems
    // that do not notify (and for a watcher that overflowed), so it can be slow while the watcher works.
    private static readonly TimeSpan RescanInterval = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan RescanIntervalWithoutWatcher = TimeSpan.FromSeconds(2);
    private readonly ILogger log;
    private readonly IReadOnlySet<string> shared;
    private readonly SemaphoreSlim gate = new(1, 1);
    private readonly Dictionary<string, LoadedPlugin> plugins = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> refusedFingerprints = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> stamps = new(StringComparer.Ordinal);
    private volatile Dictionary<string, (IHandler Handler, LoadedPlugin Plugin)> bySubtype = new(StringComparer.Ordinal);
    private FileSystemWatcher? watcher;
    private Timer? timer;
    private int scanRequested;

    public PluginHost(string handlerPath, ILogger log)
    {
        HandlerPath = Path.GetFullPath(handlerPath);
        this.log = log;
        var sdk = typeof(IHandler).Assembly;
        shared = new HashSet<string>(sdk.GetReferencedAssemblies().Select(a => a.Name!).Append(sdk.GetName().Name!), StringComparer.Ordinal);
    }

    public string HandlerPath { get; }

    /// <summary>Set by the LUN registry: moves LUNs during a hot upgrade.</summary>
    public PluginSwitcher? Switcher { get; set; }

    /// <summary>
    /// Set by the daemon: readies each handler of a newly loaded build before it serves (its
    /// own settings); returns why it cannot, which refuses the build, or null.
    /// </summary>
    public Func<IHandler, string?>? Prepare { get; set; }

    /// <summary>Raised after plugins were added or upgraded (the registry retries LUNs waiting for a subtype).</summary>
    public event Action? PluginsChanged;

    public IReadOnlyCollection<LoadedPlugin> Plugins
    {
        get { lock (plugins) return plugins.Values.ToList(); }
    }

    public bool TryGetHandler(string subtype, out IHandler handler, out LoadedPlugin plugin)
    {
        if (bySubtype.TryGetValue(subtype, out var entry))
        {
            (handler, plugin) = entry;
            return true;
        }
        handler = null!;
        plugin = null!;
        return false;
    }

    public IReadOnlyCollection<string> Subtypes => bySubtype.Keys;

    /// <summary>Loads every plugin folder, then watches the path for changes.</summary>
    public async Task StartAsync()
    {
        Directory.CreateDirectory(HandlerPath);
        await ScanAsync();
        watcher = new FileSystemWatcher(HandlerPath) { IncludeSubdirectories = true, NotifyFilter = NotifyFilters.FileName | NotifyFilters.DirectoryName | NotifyFilters.LastWrite | NotifyFilters.Size };
        watcher.Changed += (_, _) => RequestScan();
        watcher.Created += (_, _) => RequestScan();
        watcher.Deleted += (_, _) => RequestScan();
        watcher.Renamed += (_, _) => RequestScan();
        watcher.Error += (_, e) =>
        {
            log.Warning("Watching the handler path {Path} failed ({Reason}); rescanning it every {Seconds} s instead", HandlerPath, e.GetException().Message, RescanIntervalWithoutWatcher.TotalSeconds);
            timer?.Change(RescanIntervalWithoutWatcher, RescanIntervalWithoutWatcher);
            RequestScan();
        };
        watcher.EnableRaisingEvents = true;
        timer = new Timer(_ => RequestScan(), null, RescanInterval, RescanInterval);
    }

    private void RequestScan()
    {
        if (Interlocked.Exchange(ref scanRequested, 1) == 1)
            return;
        _ = Task.Run(async () =>
        {
            await Task.Delay(300); // debounce: let a copy finish
            Interlocked.Exchange(ref scanRequested, 0);
            try
            {
                await ScanAsync();
            }
            catch (Exception e)
            {
                log.Error(e, "Scanning the handler path {Path} failed", HandlerPath);
            }
        });
    }

    /// <summary>Compares the handler path with what is loaded and acts on the differences.</summary>
    public async Task ScanAsync()
    {
        await gate.WaitAsync();
        var changed = false;
        try
        {
            foreach (var folder in Directory.EnumerateDirectories(HandlerPath).Order(StringComparer.Ordinal))
            {
                var name = Path.GetFileName(folder);
                var main = FindMainAssembly(folder, name);
                if (main is null)
                    continue;
                string fingerprint;
                try
                {
                    // Hash the files only when their names, sizes or times moved.
                    var stamp = Stamp(folder);
                    if (stamps.TryGetValue(name, out var seen) && seen == stamp)
                        continue;
                    fingerprint = Fingerprint(folder);
                    stamps[name] = stamp;
                }
                catch (IOException)
                {
                    continue; // being written; the next scan will see it whole
                }
                LoadedPlugin? current;
                lock (plugins) plugins.TryGetValue(name, out current);
                if (current?.Fingerprint == fingerprint)
                    continue;
                if (refusedFingerprints.TryGetValue(name, out var refused) && refused == fingerprint)
                    continue;
                changed |= current is null ? TryAdd(name, folder, main, fingerprint) : await TryUpgradeAsync(current, folder, main, fingerprint);
            }
        }
        finally
        {
            gate.Release();
        }
        if (changed)
            PluginsChanged?.Invoke();
    }

    private bool TryAdd(string name, string folder, string main, string fingerprint)
    {
        var plugin = Load(name, folder, main, fingerprint, replacing: null);
        if (plugin is null)
            return false;
        lock (plugins) plugins[name] = plugin;
        Publish();
        log.Information("Loaded handler plugin {Plugin} {Version} with subtypes {Subtypes}", name, plugin.Version, plugin.Handlers.Select(h => h.Subtype));
        return true;
    }

    private async Task<bool> TryUpgradeAsync(LoadedPlugin current, string folder, string main, string fingerprint)
    {
        var next = Load(current.Name, folder, main, fingerprint, replacing: current);
        if (next is null)
        {
            log.Warning("Handler plugin {Plugin} keeps serving from its previous version", current.Name);
            return false;
        }
        log.Information("Upgrading handler plugin {Plugin} from {Old} to {New}: quiescing its LUNs", current.Name, current.Version, next.Version);
        var error = Switcher is null ? null : await Switcher(current, next);
        if (error is not null)
        {
            log.Error("Upgrade of handler plugin {Plugin} rolled back, the previous version keeps serving: {Reason}", current.Name, error);
            refusedFingerprints[current.Name] = fingerprint;
            next.Unload();
            return false;
        }
        lock (plugins) plugins[current.Name] = next;
        Publish();
        current.Unload();
        log.Information("Handler plugin {Plugin} upgraded to {Version}", current.Name, next.Version);
        return true;
    }

    /// <summary>Loads a plugin and checks its subtypes; logs and returns null when it must be refused.</summary>
    private LoadedPlugin? Load(string name, string folder, string main, string fingerprint, LoadedPlugin? replacing)
    {
        var context = new PluginLoadContext(main, shared);
        try
        {
            var assembly = context.LoadMain();
            CheckSdkVersion(assembly);
            var handlers = Discover(assembly);
            if (handlers.Count == 0)
                throw new InvalidOperationException($"{Path.GetFileName(main)} has no public IHandler with a parameterless constructor");
            foreach (var h in handlers)
            {
                if (string.IsNullOrWhiteSpace(h.Subtype) || h.Subtype.Contains('/'))
                    throw new InvalidOperationException($"handler {h.GetType().FullName} declares the invalid subtype '{h.Subtype}'");
                if (bySubtype.TryGetValue(h.Subtype, out var owner) && owner.Plugin != replacing)
                {
                    refusedFingerprints[name] = fingerprint;
                    context.Unload();
                    log.Error("Handler plugin {Plugin} ({Path}) is refused: its subtype '{Subtype}' is already served by plugin {Owner} ({OwnerPath})",
                        name, main, h.Subtype, owner.Plugin.Name, owner.Plugin.MainAssembly);
                    return null;
                }
            }
            if (handlers.GroupBy(h => h.Subtype).FirstOrDefault(g => g.Count() > 1) is { } dup)
                throw new InvalidOperationException($"it declares subtype '{dup.Key}' twice");
            foreach (var h in handlers)
                if (Prepare?.Invoke(h) is { } unready)
                    throw new InvalidOperationException(unready);
            // The informational version without its source-revision suffix ("1.2.0+<commit>").
            var version = (assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? assembly.GetName().Version?.ToString() ?? "?").Split('+')[0];
            refusedFingerprints.Remove(name);
            return new LoadedPlugin(name, folder, main, fingerprint, context, handlers, version);
        }
        catch (Exception e)
        {
            refusedFingerprints[name] = fingerprint;
            context.Unload();
            var reason = e is ReflectionTypeLoadException rtle ? string.Join("; ", rtle.LoaderExceptions.Select(x => x?.Message)) : e.Message;
            log.Error("Handler plugin {Plugin} ({Path}) failed to load: {Reason}", name, main, reason);
            return null;
        }
    }

    /// <summary>The SDK this host provides; a plugin built against a newer one is refused.</summary>
    public static Version SdkVersion { get; } = typeof(IHandler).Assembly.GetName().Version!;

    /// <summary>
    /// Refuses a plugin built against a newer SDK than the host's, before any of its types
    /// load (a missing member would otherwise fail later, at a call, with a bare MissingMethodException).
    /// </summary>
    internal static void CheckSdkVersion(Assembly assembly)
    {
        var sdkName = typeof(IHandler).Assembly.GetName().Name;
        var wanted = assembly.GetReferencedAssemblies().FirstOrDefault(a => a.Name == sdkName)?.Version;
        if (wanted is not null && new Version(wanted.Major, wanted.Minor, Math.Max(0, wanted.Build)) > new Version(SdkVersion.Major, SdkVersion.Minor, Math.Max(0, SdkVersion.Build)))
            throw new InvalidOperationException($"it was built against {sdkName} {wanted.ToString(3)}, newer than this runtime's {SdkVersion.ToString(3)}; " +
                $"rebuild it against SDK {SdkVersion.ToString(3)} or upgrade hrt");
    }

    private static List<IHandler> Discover(Assembly assembly)
        => assembly.GetExportedTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IHandler).IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null)
            .Select(t => (IHandler)Activator.CreateInstance(t)!)
            .ToList();

    private void Publish()
    {
        var map = new Dictionary<string, (IHandler, LoadedPlugin)>(StringComparer.Ordinal);
        lock (plugins)
            foreach (var p in plugins.Values)
                foreach (var h in p.Handlers)
                    map[h.Subtype] = (h, p);
        bySubtype = map;
    }

    /// <summary>The plugin's entry assembly: <c>&lt;Name&gt;.dll</c> or <c>*.&lt;Name&gt;.dll</c> in its folder.</summary>
    internal static string? FindMainAssembly(string folder, string name)
    {
        var exact = Path.Combine(folder, name + ".dll");
        if (File.Exists(exact))
            return exact;
        return Directory.EnumerateFiles(folder, "*." + name + ".dll").Order(StringComparer.Ordinal).FirstOrDefault();
    }

    private static IEnumerable<string> PluginFiles(string folder)
        => Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Where(f => f.EndsWith(".dll", StringComparison.Ordinal) || f.EndsWith(".json", StringComparison.Ordinal) || f.EndsWith(".so", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal);

    private static string Stamp(string folder)
        => string.Join('|', PluginFiles(folder).Select(f => new FileInfo(f)).Select(f => $"{f.Name}:{f.Length}:{f.LastWriteTimeUtc.Ticks}"));

    // What identifies a plugin version: the content of every assembly and deps file in its folder.
    private static string Fingerprint(string folder)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var file in PluginFiles(folder))
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(Path.GetRelativePath(folder, file)));
            sha.AppendData(File.ReadAllBytes(file));
        }
        return Convert.ToHexString(sha.GetHashAndReset());
    }

    public ValueTask DisposeAsync()
    {
        watcher?.Dispose();
        timer?.Dispose();
        return default;
    }
}
