using System.Security.Cryptography;
using System.Text;
using HandlerRuntime.Devices;
using HandlerRuntime.Plugins;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Luns;

/// <summary>
/// One LUN's stack of devices while it is opened: the top device and every device a handler
/// in it opens below itself (a filter's base, DRBD's local disk). Each nested device is opened
/// with the LUN's read-only setting, reports its events to the LUN, gets a state directory of
/// its own, is claimed for the stack (no other LUN or stack opens the same store) and comes
/// wrapped in a <see cref="DeviceAdapter"/>. The stack also records which plugins it uses,
/// so a hot upgrade of any of them reopens the LUN, and during an upgrade it finds handlers
/// through the upgrade's resolver (the new version for the upgraded plugin's subtypes).
/// </summary>
internal sealed class DeviceStack
{
    /// <summary>Finds the handler for a subtype; null when none is loaded.</summary>
    public delegate (IHandler Handler, LoadedPlugin Plugin)? HandlerResolver(string subtype);

    private readonly LunRegistry registry;
    private readonly List<DeviceAdapter> nested = [];

    public DeviceStack(LunRegistry registry, string lun, bool readOnly, IDeviceEvents events, HandlerResolver resolve)
    {
        this.registry = registry;
        Lun = lun;
        ReadOnly = readOnly;
        Events = events;
        Resolve = resolve;
    }

    public string Lun { get; }
    public bool ReadOnly { get; }
    public IDeviceEvents Events { get; }
    public HandlerResolver Resolve { get; }

    /// <summary>Every plugin a device of this stack came from, the top one included.</summary>
    public HashSet<LoadedPlugin> Plugins { get; } = [];

    /// <summary>The opener a handler of this stack gets in its context, for devices below it.</summary>
    public INestedDeviceOpener OpenerFor(string parentStateDirectory, string parentCfgstring) => new Opener(this, parentStateDirectory, parentCfgstring);

    /// <summary>After a failed open: closes what the handlers opened below themselves and did not close.</summary>
    public async Task CloseLeftoversAsync()
    {
        DeviceAdapter[] open;
        lock (nested)
            open = nested.ToArray();
        foreach (var device in open)
        {
            try
            {
                await device.DisposeAsync();
            }
            catch (Exception e)
            {
                registry.Log.Warning("LUN {Lun}: closing a nested device after a failed open failed: {Reason}", Lun, e.Message);
            }
        }
    }

    private async ValueTask<IBlockDevice> OpenNestedAsync(string parentState, string parentCfgstring, string cfgstring, long size, int blockSize, bool readOnly, CancellationToken ct)
    {
        if (LunDefinition.SplitCfgstring(cfgstring) is not var (subtype, config))
            throw new HandlerConfigException($"the cfgstring '{cfgstring}' that {parentCfgstring} stacks on has no '/'; write <subtype>/<config>.");
        if (Resolve(subtype) is not var (handler, plugin))
            throw new HandlerConfigException(registry.NoHandlerMessage(subtype));
        if (handler.CheckConfig(config) is { IsValid: false } bad)
            throw new HandlerConfigException($"{cfgstring} (below {parentCfgstring}): {bad.Reason}");

        var holder = $"LUN {Lun} (below {parentCfgstring})";
        var key = LunRegistry.ResourceKeyOf(handler, subtype, config);
        if (key is not null && registry.Claim(key, holder) is { } owner)
            throw new HandlerConfigException($"{cfgstring} is in use by {owner}; a stacked device must own its base alone. Stack on another store, or remove the other user first.");
        try
        {
            // Its own state directory, named by the cfgstring: two bases of one subtype do not share one.
            var state = Path.Combine(parentState, "nested", $"{subtype}-{Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(cfgstring)))[..12].ToLowerInvariant()}");
            Directory.CreateDirectory(state);
            var events = new NestedEvents(Events);
            var device = await registry.OpenDeviceAsync(handler, new DeviceOpenContext
            {
                LunName = Lun,
                Config = config,
                RequestedSize = size,
                RequestedBlockSize = blockSize,
                ReadOnly = ReadOnly || readOnly,
                Logger = registry.HandlerLogger(subtype, Lun),
                StateDirectory = state,
                Events = events,
                NestedDevices = OpenerFor(state, cfgstring),
            }, ct);
            Plugins.Add(plugin);
            DeviceAdapter? adapter = null;
            adapter = new DeviceAdapter(device, onDispose: () =>
            {
                lock (nested)
                    nested.Remove(adapter!);
                if (key is not null)
                    registry.Release(key, holder);
                return default;
            });
            events.Device = adapter;
            lock (nested)
                nested.Add(adapter);
            return adapter;
        }
        catch (LunException e)
        {
            if (key is not null)
                registry.Release(key, holder);
            throw new HandlerConfigException($"{cfgstring} (below {parentCfgstring}): {e.Message}");
        }
        catch
        {
            if (key is not null)
                registry.Release(key, holder);
            throw;
        }
    }

    private sealed class Opener(DeviceStack stack, string parentState, string parentCfgstring) : INestedDeviceOpener
    {
        public ValueTask<IBlockDevice> OpenAsync(string cfgstring, long size, int blockSize, bool readOnly, CancellationToken cancellationToken)
            => stack.OpenNestedAsync(parentState, parentCfgstring, cfgstring, size, blockSize, readOnly, cancellationToken);
    }

    /// <summary>A nested device's events go to its LUN; a resize is first seen by the adapter that caches its geometry.</summary>
    private sealed class NestedEvents(IDeviceEvents lun) : IDeviceEvents
    {
        public DeviceAdapter? Device { get; set; }

        public void ConnectionLost(string reason) => lun.ConnectionLost(reason);
        public void ConnectionRestored() => lun.ConnectionRestored();
        public void LockLost(string reason) => lun.LockLost(reason);
        public void AccessStateChanged(DeviceAccessState state, string reason) => lun.AccessStateChanged(state, reason);

        public void Resized(long newSizeBytes)
        {
            Device?.RefreshGeometry();
            lun.Resized(newSizeBytes);
        }
    }
}
