using HandlerRuntime.Plugins;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging;
using Serilog;

namespace HandlerRuntime.Luns;

/// <summary>
/// Creates, deletes and resizes LUNs, opening their devices through the handler
/// plugins and mapping them into targets. One change at a time; lookups are lock-free
/// for the command path (which goes through the targets, not through here).
/// Definitions whose handler is not loaded yet wait and are retried when plugins change.
/// </summary>
public sealed class LunRegistry : IAsyncDisposable
{
    private readonly PluginHost plugins;
    private readonly TargetRegistry targets;
    private readonly string stateRoot;
    private readonly Serilog.ILogger log;
    private readonly ILoggerFactory handlerLogs;
    private readonly SemaphoreSlim gate = new(1, 1);
    private readonly Dictionary<string, LunEntry> entries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (LunDefinition Definition, string Reason)> waiting = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> claims = new(StringComparer.Ordinal); // a nested device's store -> who holds it

    public LunRegistry(PluginHost plugins, TargetRegistry targets, string stateDirectory, Serilog.ILogger log, ILoggerFactory handlerLogs)
    {
        this.plugins = plugins;
        this.targets = targets;
        stateRoot = stateDirectory;
        this.log = log;
        this.handlerLogs = handlerLogs;
        plugins.Switcher = SwitchPluginAsync;
        plugins.PluginsChanged += () => _ = RetryWaitingAsync();
    }

    /// <summary>SANITIZE OVERWRITE pace for every LU, in bytes per second (0: unlimited).</summary>
    public long SanitizeBytesPerSecond
    {
        get;
        set
        {
            field = value;
            foreach (var e in Entries)
                e.Lun.Sanitizer.BytesPerSecond = value;
        }
    } = Config.RuntimeSettings.DefaultSanitizeRate;

    /// <summary>Raised after a create, delete or resize asked for by a user (not by a config reload), so the definitions can be persisted.</summary>
    public event Action? DefinitionsChanged;

    public IReadOnlyList<LunEntry> Entries
    {
        get { lock (entries) return entries.Values.OrderBy(e => e.Target.Name).ThenBy(e => e.Number).ToList(); }
    }

    /// <summary>Definitions configured but not served, with the reason (for example a handler not loaded yet).</summary>
    public IReadOnlyList<(LunDefinition Definition, string Reason)> Waiting
    {
        get { lock (entries) return waiting.Values.ToList(); }
    }

    /// <summary>Every definition to persist: served ones as resolved, waiting ones as given.</summary>
    public IReadOnlyList<LunDefinition> Definitions
    {
        get { lock (entries) return entries.Values.Where(e => e.Fabric is null).Select(e => e.Definition).Concat(waiting.Values.Select(w => w.Definition)).OrderBy(d => d.Name, StringComparer.Ordinal).ToList(); }
    }

    public LunEntry? Find(string name)
    {
        lock (entries) return entries.GetValueOrDefault(name);
    }

    /// <summary>The LUN named <paramref name="name"/>; a <see cref="LunException"/> (not found) saying how to list them when there is none.</summary>
    public LunEntry Get(string name) => Find(name) ?? throw new LunException(NoSuchLun(name), LunError.NotFound);

    /// <summary>The sentence for a LUN name that names nothing.</summary>
    public static string NoSuchLun(string name) => $"There is no LUN named {name}; `hrt lun list` shows the LUNs.";

    /// <summary>Validates a cfgstring with its handler, without opening anything.</summary>
    public ConfigCheck CheckConfig(string cfgstring)
    {
        if (LunDefinition.SplitCfgstring(cfgstring) is not var (subtype, config))
            return ConfigCheck.Invalid($"'{cfgstring}' has no '/': write <subtype>/<handler config>, for example file//var/lib/hrt/disk0.img or ram/@.");
        if (!plugins.TryGetHandler(subtype, out var handler, out _))
            return ConfigCheck.Invalid(NoHandlerMessage(subtype));
        return handler.CheckConfig(config);
    }

    /// <summary>Asks the handler of a valid cfgstring whether its store answers; valid as is when the handler cannot tell.</summary>
    public async Task<ConfigCheck> CheckReachableAsync(string cfgstring, CancellationToken ct)
    {
        if (LunDefinition.SplitCfgstring(cfgstring) is not var (subtype, config) || !plugins.TryGetHandler(subtype, out var handler, out _))
            return CheckConfig(cfgstring);
        return handler is IReachabilityCheck probe ? await probe.CheckReachableAsync(config, ct) : ConfigCheck.Valid;
    }

    internal string NoHandlerMessage(string subtype)
        => $"No loaded handler serves subtype '{subtype}' (loaded: {(plugins.Subtypes.Count == 0 ? "none" : string.Join(", ", plugins.Subtypes.Order()))}); " +
           $"fix the cfgstring or drop the handler's folder into {plugins.HandlerPath}.";

    /// <summary>Creates a LUN for a user request and persists it.</summary>
    public async Task<LunEntry> CreateAsync(LunDefinition definition, CancellationToken ct)
    {
        await gate.WaitAsync(ct);
        LunEntry entry;
        try
        {
            lock (entries)
            {
                if (entries.ContainsKey(definition.Name) || waiting.ContainsKey(definition.Name))
                    throw new LunException($"A LUN named {definition.Name} already exists; pick another name or delete it first.", LunError.Conflict);
            }
            entry = await CreateLockedAsync(definition, ct);
        }
        finally
        {
            gate.Release();
        }
        DefinitionsChanged?.Invoke();
        return entry;
    }

    private async Task<LunEntry> CreateLockedAsync(LunDefinition definition, CancellationToken ct, ScsiTarget? fabricTarget = null, string? fabric = null)
    {
        if (definition.Validate() is { } invalid)
            throw new LunException(invalid);
        var (subtype, config) = LunDefinition.SplitCfgstring(definition.Cfgstring)!.Value;
        if (!plugins.TryGetHandler(subtype, out var handler, out var plugin))
            throw new LunException($"LUN {definition.Name}: " + NoHandlerMessage(subtype));
        if (handler.CheckConfig(config) is { IsValid: false } bad)
            throw new LunException($"LUN {definition.Name}: {bad.Reason}");

        var target = fabricTarget ?? targets.GetOrAdd(definition.Target ?? targets.DefaultName);
        var number = definition.Lun ?? target.LowestFreeNumber();
        if (target.Lookup((ulong)number) is { } taken)
            throw new LunException($"LUN number {number} of {target.Name} is already used by LUN {taken.Name}; choose another number or leave it out.", LunError.Conflict);

        var stateDirectory = Path.Combine(stateRoot, "luns", definition.Name);
        if (ResourceKeyOf(handler, subtype, config) is { } key && ClaimHolder(key, exceptLun: definition.Name) is { } holder && holder.Nested)
            throw new LunException($"LUN {definition.Name}: {definition.Cfgstring} is the base of {holder.Who}, which owns it; give this LUN another store.", LunError.Conflict);
        Directory.CreateDirectory(stateDirectory);
        var relay = new DeviceEventsRelay();
        var (device, stack) = await OpenStackAsync(handler, plugin, definition, config, stateDirectory, relay, ResolveLoaded, ct);
        try
        {
            var g = device.Geometry;
            if (definition.BlockSize != 0 && g.LogicalBlockSize != definition.BlockSize)
                throw new LunException($"LUN {definition.Name}: the {subtype} handler opened it with {g.LogicalBlockSize}-byte blocks, not the requested {definition.BlockSize}.");
            if (!DeviceGeometry.IsValidBlockSize(g.LogicalBlockSize) || g.BlockCount <= 0)
                throw new LunException($"LUN {definition.Name}: the {subtype} handler reported an unusable geometry ({g.BlockCount} blocks of {g.LogicalBlockSize} bytes).");
            ScsiLun lun;
            try
            {
                // The LU keeps APTPL persistent reservations in its state directory and restores them here.
                lun = new ScsiLun(LunIdentity.FromName(definition.Name, subtype), device, definition.ReadOnly, definition.WriteCache, log, stateDirectory, definition.Removable,
                    definition.PhysicalBlockSize);
            }
            catch (InvalidDataException e)
            {
                throw new LunException($"LUN {definition.Name}: {e.Message}");
            }
            lun.Sanitizer.BytesPerSecond = SanitizeBytesPerSecond;
            lun.CopyTargets = new Scsi.Copy.TargetRegistryCopyTargets(targets); // EXTENDED COPY may name any LU the initiator can reach
            relay.Attach(lun);
            await lun.RecoverAsync(ct);
            if (!target.TryMap(number, lun))
                throw new LunException($"LUN number {number} of {target.Name} was taken meanwhile; try again.", LunError.Conflict);
            var resolved = definition with { Target = target.Name, Lun = number };
            var entry = new LunEntry(resolved, target, number, lun, handler, plugin, stateDirectory) { StackPlugins = stack.Plugins, Fabric = fabric };
            lock (entries)
            {
                entries[definition.Name] = entry;
                waiting.Remove(definition.Name);
            }
            log.Information("LUN {Lun} created: {Cfgstring}, {Blocks} blocks of {BlockSize} bytes, {Target} LUN {Number}",
                definition.Name, definition.Cfgstring, g.BlockCount, g.LogicalBlockSize, target.Name, number);
            return entry;
        }
        catch
        {
            await device.DisposeAsync();
            await stack.CloseLeftoversAsync();
            throw;
        }
    }

    internal Serilog.ILogger Log => log;

    internal Microsoft.Extensions.Logging.ILogger HandlerLogger(string subtype, string lun) => handlerLogs.CreateLogger($"handler.{subtype}.{lun}");

    private (IHandler Handler, LoadedPlugin Plugin)? ResolveLoaded(string subtype)
        => plugins.TryGetHandler(subtype, out var handler, out var plugin) ? (handler, plugin) : null;

    /// <summary>
    /// Opens a LUN's top device, and through its handler whatever it stacks on; returns the
    /// device and the stack that knows the plugins used. A failure closes what was opened.
    /// </summary>
    private async Task<(IBlockDevice Device, DeviceStack Stack)> OpenStackAsync(IHandler handler, LoadedPlugin plugin, LunDefinition definition, string config,
        string stateDirectory, IDeviceEvents events, DeviceStack.HandlerResolver resolve, CancellationToken ct)
    {
        var stack = new DeviceStack(this, definition.Name, definition.ReadOnly, events, resolve);
        stack.Plugins.Add(plugin);
        try
        {
            var device = await OpenDeviceAsync(handler, new DeviceOpenContext
            {
                LunName = definition.Name,
                Config = config,
                RequestedSize = definition.Size,
                RequestedBlockSize = definition.BlockSize,
                ReadOnly = definition.ReadOnly,
                Logger = HandlerLogger(handler.Subtype, definition.Name),
                StateDirectory = stateDirectory,
                Events = events,
                NestedDevices = stack.OpenerFor(stateDirectory, definition.Cfgstring),
            }, ct);
            return (device, stack);
        }
        catch (LunException e)
        {
            await stack.CloseLeftoversAsync();
            throw new LunException($"LUN {definition.Name}: {e.Message}", e.Kind);
        }
        catch
        {
            await stack.CloseLeftoversAsync();
            throw;
        }
    }

    /// <summary>Calls a handler's open; its failures become a <see cref="LunException"/> whose sentence says why.</summary>
    internal async Task<IBlockDevice> OpenDeviceAsync(IHandler handler, DeviceOpenContext context, CancellationToken ct)
    {
        try
        {
            return await handler.OpenAsync(context, ct);
        }
        catch (HandlerConfigException e)
        {
            throw new LunException(e.Message);
        }
        catch (ScsiException e)
        {
            throw new LunException($"the {handler.Subtype} handler could not open it: {e.Message}");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            log.Error(e, "LUN {Lun}: the {Subtype} handler failed while opening", context.LunName, handler.Subtype);
            throw new LunException($"the {handler.Subtype} handler failed while opening: {e.Message}");
        }
    }

    // ---- claims: a stack owns the stores below its top device ----

    /// <summary>What a device of <paramref name="handler"/> opened from <paramref name="config"/> holds exclusively, or null.</summary>
    internal static string? ResourceKeyOf(IHandler handler, string subtype, string config)
        => handler.ResourceKey(config) is { } key ? $"{subtype}/{key}" : null;

    /// <summary>Who uses <paramref name="key"/>: a stack that claimed it (Nested), else a LUN that serves it directly; null when free.</summary>
    private (string Who, bool Nested)? ClaimHolder(string key, string? exceptLun = null)
    {
        lock (claims)
            if (claims.TryGetValue(key, out var holder))
                return (holder, true);
        return DirectUser(key, exceptLun) is { } lun ? (lun, false) : null;
    }

    /// <summary>The LUN whose top device is opened from <paramref name="key"/>'s store, if any.</summary>
    private string? DirectUser(string key, string? exceptLun = null)
    {
        foreach (var e in Entries)
            if (e.Name != exceptLun && LunDefinition.SplitCfgstring(e.Definition.Cfgstring) is var (subtype, config) && ResourceKeyOf(e.Handler, subtype, config) == key)
                return $"LUN {e.Name}";
        return null;
    }

    /// <summary>Claims a store for a stack; returns who uses it instead, when someone does.</summary>
    internal string? Claim(string key, string holder)
    {
        lock (claims)
        {
            if (claims.TryGetValue(key, out var owner))
                return owner;
            claims[key] = holder; // reserved first, so two stacks opening at once cannot both get it
        }
        if (DirectUser(key) is { } user)
        {
            Release(key, holder);
            return user;
        }
        return null;
    }

    internal void Release(string key, string holder)
    {
        lock (claims)
            if (claims.TryGetValue(key, out var owner) && owner == holder)
                claims.Remove(key);
    }

    /// <summary>Deletes a LUN: unmapped first (new commands see no LU), then drained, flushed and closed.</summary>
    public async Task DeleteAsync(string name, CancellationToken ct)
    {
        await gate.WaitAsync(ct);
        try
        {
            bool wasWaiting;
            lock (entries) wasWaiting = waiting.Remove(name);
            if (!wasWaiting)
            {
                var entry = Get(name);
                RefuseFabricOwned(entry, "delete");
                await DeleteLockedAsync(entry, removeState: true);
            }
        }
        finally
        {
            gate.Release();
        }
        DefinitionsChanged?.Invoke();
    }

    private async Task DeleteLockedAsync(LunEntry entry, bool removeState)
    {
        entry.Target.Unmap(entry.Number);
        lock (entries) entries.Remove(entry.Name);
        await CloseAsync(entry);
        if (removeState)
            TryDeleteDirectory(entry.StateDirectory);
        log.Information("LUN {Lun} deleted", entry.Name);
    }

    private async Task CloseAsync(LunEntry entry)
    {
        await entry.Lun.QuiesceAsync();
        try
        {
            await entry.Lun.Device.FlushAsync(CancellationToken.None);
        }
        catch (Exception e)
        {
            log.Error(e, "LUN {Lun}: flush before close failed", entry.Name);
        }
        await entry.Lun.Device.DisposeAsync();
        entry.Lun.Retire();
    }

    public async Task<LunEntry> ResizeAsync(string name, long newSize, CancellationToken ct)
    {
        await gate.WaitAsync(ct);
        LunEntry entry;
        try
        {
            entry = Get(name);
            RefuseFabricOwned(entry, "resize");
            await ResizeLockedAsync(entry, newSize, ct);
        }
        finally
        {
            gate.Release();
        }
        DefinitionsChanged?.Invoke();
        return entry;
    }

    private async Task ResizeLockedAsync(LunEntry entry, long newSize, CancellationToken ct)
    {
        if (newSize <= 0 || newSize % entry.Lun.BlockSize != 0)
            throw new LunException($"LUN {entry.Name}: the new size must be a positive multiple of its {entry.Lun.BlockSize}-byte block size.");
        if ((entry.Lun.Capabilities & DeviceCapabilities.Resize) == 0)
            throw new LunException($"LUN {entry.Name}: its {entry.Handler.Subtype} handler cannot resize.");
        try
        {
            await entry.Lun.ResizeAsync(newSize, ct);
        }
        catch (ScsiException e)
        {
            throw new LunException($"LUN {entry.Name}: resize failed: {e.Message}");
        }
        entry.Definition = entry.Definition with { Size = newSize };
        log.Information("LUN {Lun} resized to {Size} bytes", entry.Name, newSize);
    }

    /// <summary>
    /// Makes the served LUNs match a configuration: removes those no longer listed,
    /// resizes those whose size alone changed, recreates those otherwise changed, creates
    /// new ones. A LUN that cannot be created waits with its reason; the rest go on.
    /// </summary>
    public async Task<IReadOnlyList<string>> ApplyAsync(IReadOnlyList<LunDefinition> desired, CancellationToken ct)
    {
        var actions = new List<string>();
        await gate.WaitAsync(ct);
        try
        {
            var wanted = desired.ToDictionary(d => d.Name, StringComparer.Ordinal);
            lock (entries)
                foreach (var name in waiting.Keys.Where(n => !wanted.ContainsKey(n)).ToList())
                    waiting.Remove(name);
            foreach (var entry in Entries.Where(e => e.Fabric is null))
            {
                if (!wanted.TryGetValue(entry.Name, out var want))
                {
                    await DeleteLockedAsync(entry, removeState: false);
                    actions.Add($"removed LUN {entry.Name}");
                    continue;
                }
                switch (Compare(entry, want))
                {
                    case Change.None:
                        break;
                    case Change.Size:
                        await TryAsync(actions, want, async () => await ResizeLockedAsync(entry, want.Size, ct), $"resized LUN {entry.Name} to {want.Size} bytes");
                        break;
                    case Change.Other:
                        await DeleteLockedAsync(entry, removeState: false);
                        await TryAsync(actions, want, async () => await CreateLockedAsync(want, ct), $"recreated LUN {entry.Name}");
                        break;
                }
            }
            foreach (var want in desired)
            {
                if (Find(want.Name) is { Fabric: { } fabric })
                    await TryAsync(actions, want, () => throw new LunException($"LUN {want.Name}: the name is taken by a LUN of the {fabric} fabric; rename one of them."), "");
                else if (Find(want.Name) is null)
                    await TryAsync(actions, want, async () => await CreateLockedAsync(want, ct), $"created LUN {want.Name}");
            }
        }
        finally
        {
            gate.Release();
        }
        return actions;
    }

    private static void RefuseFabricOwned(LunEntry entry, string verb)
    {
        if (entry.Fabric is { } fabric)
            throw new LunException($"LUN {entry.Name} belongs to the {fabric} fabric, which created it; {verb} it where it was made (for a TCMU device: targetcli or configfs).", LunError.Conflict);
    }

    // ---- LUNs a fabric owns (TCMU devices): served like the rest, never persisted ----

    /// <summary>
    /// Opens a LUN that <paramref name="fabric"/> brought (a TCMU device made with targetcli) and
    /// maps it as LUN 0 of <paramref name="target"/>, the fabric's own target (not one of the
    /// registry's, so no other fabric reaches it). It is listed like any LUN but not persisted,
    /// not touched by config reloads, and removed only by <see cref="DetachFabricLunAsync"/>.
    /// </summary>
    public async Task<LunEntry> AttachFabricLunAsync(LunDefinition definition, ScsiTarget target, string fabric, CancellationToken ct)
    {
        await gate.WaitAsync(ct);
        try
        {
            lock (entries)
            {
                if (entries.ContainsKey(definition.Name) || waiting.ContainsKey(definition.Name))
                    throw new LunException($"A LUN named {definition.Name} already exists; give the {fabric} device another name.", LunError.Conflict);
            }
            return await CreateLockedAsync(definition with { Lun = 0 }, ct, target, fabric);
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>Unmaps, drains, flushes and closes a fabric's LUN; <paramref name="removeState"/> when the device itself is gone.</summary>
    public async Task DetachFabricLunAsync(string name, bool removeState)
    {
        await gate.WaitAsync();
        try
        {
            if (Find(name) is { Fabric: not null } entry)
                await DeleteLockedAsync(entry, removeState);
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>Resizes a fabric's LUN when its fabric was told the new size (TCMU's dev_size reconfig).</summary>
    public async Task ResizeFabricLunAsync(string name, long newSize, CancellationToken ct)
    {
        await gate.WaitAsync(ct);
        try
        {
            var entry = Find(name);
            if (entry is not { Fabric: not null })
                throw new LunException($"There is no fabric LUN named {name}.", LunError.NotFound);
            await ResizeLockedAsync(entry, newSize, ct);
        }
        finally
        {
            gate.Release();
        }
    }

    private async Task TryAsync(List<string> actions, LunDefinition want, Func<Task> action, string done)
    {
        try
        {
            await action();
            actions.Add(done);
        }
        catch (LunException e)
        {
            lock (entries) waiting[want.Name] = (want, e.Message);
            log.Error("{Reason} The LUN waits until its configuration or handlers change.", e.Message);
            actions.Add($"LUN {want.Name} not served: {e.Message}");
        }
    }

    private enum Change { None, Size, Other }

    private Change Compare(LunEntry entry, LunDefinition want)
    {
        var have = entry.Definition;
        var same = have.Cfgstring == want.Cfgstring
            && (want.BlockSize == 0 || want.BlockSize == entry.Lun.BlockSize)
            && string.Equals(want.Target ?? targets.DefaultName, have.Target, StringComparison.OrdinalIgnoreCase)
            && (want.Lun is null || want.Lun == entry.Number)
            && want.WriteCache == have.WriteCache
            && want.ReadOnly == have.ReadOnly
            && want.Removable == have.Removable
            && want.PhysicalBlockSize == have.PhysicalBlockSize;
        if (!same)
            return Change.Other;
        return want.Size != 0 && want.Size != entry.SizeBytes ? Change.Size : Change.None;
    }

    private async Task RetryWaitingAsync()
    {
        List<LunDefinition> retry;
        lock (entries) retry = waiting.Values.Select(w => w.Definition).ToList();
        if (retry.Count == 0)
            return;
        await gate.WaitAsync();
        try
        {
            foreach (var def in retry)
            {
                lock (entries)
                    if (!waiting.ContainsKey(def.Name))
                        continue;
                await TryAsync([], def, async () => await CreateLockedAsync(def, CancellationToken.None), "");
            }
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>
    /// Hot upgrade: reopen every LUN whose device stack uses <paramref name="from"/> (as its top
    /// device or below it) with the same subtypes of <paramref name="to"/>; all or none.
    /// </summary>
    private async Task<string?> SwitchPluginAsync(LoadedPlugin from, LoadedPlugin to)
    {
        // Below the top device, the upgraded plugin's subtypes resolve to the new version.
        (IHandler, LoadedPlugin)? Upgraded(string subtype)
            => to.Handlers.FirstOrDefault(h => h.Subtype == subtype) is { } h ? (h, to)
            : from.Handlers.Any(h => h.Subtype == subtype) ? null : ResolveLoaded(subtype);
        await gate.WaitAsync();
        try
        {
            var moving = Entries.Where(e => e.Plugin == from || e.StackPlugins.Contains(from)).ToList();
            var moved = new List<(LunEntry Entry, IHandler OldHandler, LoadedPlugin OldPlugin, IReadOnlySet<LoadedPlugin> OldStack)>();
            foreach (var entry in moving)
            {
                var (oldHandler, oldPlugin, oldStack) = (entry.Handler, entry.Plugin, entry.StackPlugins);
                var next = entry.Plugin == from ? Upgraded(entry.Handler.Subtype) : (entry.Handler, entry.Plugin);
                string? error = next is null ? $"the new version has no '{entry.Handler.Subtype}' handler for LUN {entry.Name}" : null;
                if (error is null)
                {
                    try
                    {
                        entry.StackPlugins = await SwapAsync(entry, next!.Value, Upgraded, (oldHandler, oldPlugin), ResolveLoaded);
                        (entry.Handler, entry.Plugin) = next!.Value;
                        moved.Add((entry, oldHandler, oldPlugin, oldStack));
                        continue;
                    }
                    catch (Exception e)
                    {
                        error = $"LUN {entry.Name} did not open with the new version: {e.Message}";
                    }
                }
                foreach (var (back, handler, plugin, stack) in moved)
                {
                    await SwapAsync(back, (handler, plugin), ResolveLoaded, (back.Handler, back.Plugin), Upgraded);
                    (back.Handler, back.Plugin, back.StackPlugins) = (handler, plugin, stack);
                }
                return error;
            }
            return null;
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>
    /// Reopens a LUN's whole stack with <paramref name="next"/> on top and <paramref name="resolve"/>
    /// below; if that fails, with <paramref name="fallback"/> and <paramref name="resolveFallback"/>.
    /// Returns the plugins the new stack uses.
    /// </summary>
    private async Task<IReadOnlySet<LoadedPlugin>> SwapAsync(LunEntry entry, (IHandler Handler, LoadedPlugin Plugin) next, DeviceStack.HandlerResolver resolve,
        (IHandler Handler, LoadedPlugin Plugin) fallback, DeviceStack.HandlerResolver resolveFallback)
    {
        var config = LunDefinition.SplitCfgstring(entry.Definition.Cfgstring)!.Value.Config;
        var definition = entry.Definition with { Size = entry.SizeBytes, BlockSize = entry.Lun.BlockSize };
        IReadOnlySet<LoadedPlugin> used = entry.StackPlugins;
        await entry.Lun.SwapDeviceAsync(
            async () =>
            {
                var (device, stack) = await OpenStackAsync(next.Handler, next.Plugin, definition, config, entry.StateDirectory, entry.Lun, resolve, CancellationToken.None);
                used = stack.Plugins;
                return device;
            },
            async () => (await OpenStackAsync(fallback.Handler, fallback.Plugin, definition, config, entry.StateDirectory, entry.Lun, resolveFallback, CancellationToken.None)).Device);
        return used;
    }

    private void TryDeleteDirectory(string path)
    {
        try
        {
            if (Directory.Exists(path))
                Directory.Delete(path, recursive: true);
        }
        catch (IOException e)
        {
            log.Warning("Could not remove {Path}: {Reason}", path, e.Message);
        }
    }

    /// <summary>Flushes and closes every LUN (daemon shutdown).</summary>
    public async ValueTask DisposeAsync()
    {
        await gate.WaitAsync();
        foreach (var entry in Entries)
        {
            entry.Target.Unmap(entry.Number);
            await CloseAsync(entry);
        }
        lock (entries) entries.Clear();
    }
}
