using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using HandlerRuntime.Config;
using HandlerRuntime.Luns;
using HandlerRuntime.Plugins;
using HandlerRuntime.Scsi;
using Serilog;

namespace HandlerRuntime.Fabrics.Tcmu;

/// <summary>
/// The TCMU fabric: this runtime as a drop-in tcmu-runner for Linux's LIO. A <c>user:</c>
/// backstore (made with targetcli or configfs) whose dev_config names a subtype a loaded handler
/// serves becomes a LUN of that handler, and every LIO fabric (loopback, iSCSI, vhost, FC) then
/// reaches it. Devices of other subtypes are left alone for another daemon. Startup follows
/// tcmu-runner's order so that a restart with I/O in flight is survived: netlink blocked (and
/// any configfs write a dead daemon left waiting released), replies promised, existing devices
/// reattached with their rings reset (their commands come back BUSY and are retried), then
/// netlink unblocked. The D-Bus service lets targetcli list the subtypes and check cfgstrings.
/// </summary>
public sealed class TcmuFabric(LunRegistry luns, PluginHost plugins, ILogger log) : IFabric
{
    /// <summary>tcmu-runner's single-instance lock: two daemons resetting each other's rings would lose commands.</summary>
    public const string LockFile = "/run/tcmu.lock";

    private readonly ConcurrentDictionary<int, TcmuDevice> devices = new();
    private readonly Channel<TcmuDeviceEvent> events = Channel.CreateUnbounded<TcmuDeviceEvent>(new UnboundedChannelOptions { SingleReader = true });
    private TcmuNetlink? netlink;
    private TcmuEventLoop? loop;
    private Task? eventPump;
    private FileStream? lockFile;
    private TcmuDbusService? dbus;
    private bool running;

    public string Name => "tcmu";

    internal LunRegistry Luns { get; } = luns;

    internal PluginHost Plugins { get; } = plugins;

    internal ILogger Log { get; } = log.ForContext("Fabric", "tcmu");

    internal NexusTable Nexuses { get; } = new();

    internal TcmuEventLoop Loop => loop ?? throw new InvalidOperationException("the TCMU fabric is not running");

    public IReadOnlyList<string> Endpoints => running ? [$"tcmu ({devices.Count} device(s){(dbus is null ? "" : ", D-Bus " + TcmuDbusService.BusName)})"] : [];

    public IReadOnlyList<SessionInfo> Sessions => devices.Values.OrderBy(d => d.Name, StringComparer.Ordinal).Select(d => d.Describe()).ToList();

    /// <summary>The rings this daemon has mapped: each is the one channel between LIO and one device.</summary>
    public int ConnectionCount => devices.Count;

    public async Task StartAsync(RuntimeSettings settings, CancellationToken cancellationToken)
    {
        if (!settings.TcmuEnabled)
        {
            Log.Information("TCMU fabric off: tcmu.enabled is false in the configuration");
            return;
        }
        if (!TcmuConfigFs.ModuleLoaded)
            TryLoadModule();
        if (!TcmuConfigFs.ModuleLoaded)
        {
            Log.Information("TCMU fabric off: the target_core_user kernel module is not loaded here (modprobe target_core_user and restart hrt to serve LIO user: backstores)");
            return;
        }
        if (!TryLock())
            return;

        // tcmu-runner's startup order (main.c, libtcmu's tcmulib_initialize).
        if (TcmuConfigFs.HasModuleParameter("block_netlink") && TcmuConfigFs.SetModuleParameter("block_netlink", "1") is { } blockError)
            Log.Warning("TCMU: block_netlink could not be set: {Reason}", blockError);
        if (TcmuConfigFs.HasModuleParameter("reset_netlink"))
            TcmuConfigFs.SetModuleParameter("reset_netlink", "1"); // EBUSY/EINVAL when nothing waited: fine
        try
        {
            netlink = TcmuNetlink.Open(out var group);
            if (netlink is null)
            {
                Log.Information("TCMU fabric off: the TCM-USER netlink family is not registered (is target_core_user loaded?)");
                Unlock();
                return;
            }
            var replies = netlink.RequestCommandReplies();
            netlink.Subscribe(group);
            loop = new TcmuEventLoop(Log);
            foreach (var (minor, name) in TcmuConfigFs.ScanUio())
            {
                if (!Owns(name, out var why))
                {
                    Log.Information("TCMU {Device} ({Cfgstring}) left alone: {Why}", name.ConfigFsName, name.Cfgstring ?? "no dev_config", why);
                    continue;
                }
                try
                {
                    devices[minor] = await TcmuDevice.AttachAsync(this, minor, name, reopen: true, cancellationToken);
                }
                catch (Exception e) when (e is IOException or LunException or RingCorruptException)
                {
                    Log.Error("TCMU {Device}: not served: {Reason}", name.ConfigFsName, e.Message);
                }
            }
            loop.Add(netlink.Fd, _ => netlink.ReceiveAll(e => events.Writer.TryWrite(e), why => Log.Debug("TCMU netlink: {Why}", why)));
            loop.Start();
            eventPump = Task.Run(PumpEventsAsync, CancellationToken.None);
            running = true;
            Log.Information("TCMU fabric ready: {Count} device(s) served, netlink family {Family} (id {Id}), {Replies}",
                devices.Count, TcmuNetlink.FamilyName, netlink.FamilyId, replies ? "configfs writes wait for this daemon's replies" : "this kernel does not wait for replies");
        }
        finally
        {
            if (TcmuConfigFs.HasModuleParameter("block_netlink") && TcmuConfigFs.SetModuleParameter("block_netlink", "0") is { } e)
                Log.Warning("TCMU: block_netlink could not be cleared: {Reason}", e);
        }
        dbus = await TcmuDbusService.TryStartAsync(this, Log);
    }

    private void TryLoadModule()
    {
        // As tcmu-runner does; quietly, since most machines running hrt for iSCSI have no LIO.
        try
        {
            using var p = Process.Start(new ProcessStartInfo("modprobe", "-q target_core_user") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false });
            p?.WaitForExit(10_000);
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
        }
    }

    private bool TryLock()
    {
        try
        {
            lockFile = new FileStream(LockFile, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
            lockFile.Lock(0, 0); // fcntl(F_SETLK, F_WRLCK) over the whole file, as tcmu-runner takes it
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            lockFile?.Dispose();
            lockFile = null;
            Log.Warning("TCMU fabric off: {Lock} is held by another TCMU daemon (tcmu-runner?) or cannot be taken ({Reason}); stop it to let hrt serve LIO user: backstores", LockFile, e.Message);
            return false;
        }
    }

    private void Unlock()
    {
        lockFile?.Dispose();
        lockFile = null;
    }

    /// <summary>Whether a loaded handler serves the device's subtype (else another daemon may).</summary>
    internal bool Owns(TcmuDeviceName name, out string why)
    {
        if (name.Subtype is not { } subtype)
        {
            why = "its dev_config has no <subtype>/ to route it by";
            return false;
        }
        if (!Plugins.TryGetHandler(subtype, out _, out _))
        {
            why = $"no loaded handler serves subtype '{subtype}' (another daemon may)";
            return false;
        }
        why = "";
        return true;
    }

    /// <summary>Netlink events one at a time (the kernel has at most one pending per device), each answered when done.</summary>
    private async Task PumpEventsAsync()
    {
        await foreach (var e in events.Reader.ReadAllAsync())
        {
            int? status;
            try
            {
                status = await HandleAsync(e);
            }
            catch (Exception x)
            {
                Log.Error(x, "TCMU: handling {Kind} of {Device} failed", e.Kind, e.UioName);
                status = -Libc.EINVAL;
            }
            if (status is { } s && netlink is not null && netlink.Reply(e, s) is var err and not 0)
                Log.Warning("TCMU: the reply to {Kind} of {Device} could not be sent: {Reason}", e.Kind, e.UioName, Libc.Describe(err));
        }
    }

    /// <summary>Handles one event; the reply status, or null for a device this runtime leaves alone (no reply: its daemon answers).</summary>
    private async Task<int?> HandleAsync(TcmuDeviceEvent e)
    {
        var name = TcmuDeviceName.Parse(e.UioName);
        switch (e.Kind)
        {
            case TcmuCommandKind.AddedDevice:
                var why = "not a tcm-user device";
                if (name is null || !Owns(name, out why))
                {
                    Log.Warning("TCMU {Device} left alone: {Why}; its enable waits for the daemon that serves it", name?.ConfigFsName ?? e.UioName, why);
                    return null;
                }
                if (devices.ContainsKey((int)e.Minor))
                    return 0;
                try
                {
                    devices[(int)e.Minor] = await TcmuDevice.AttachAsync(this, (int)e.Minor, name, reopen: false, CancellationToken.None);
                    return 0;
                }
                catch (Exception x) when (x is IOException or LunException or RingCorruptException)
                {
                    Log.Error("TCMU {Device}: cannot serve {Cfgstring}: {Reason}", name.ConfigFsName, name.Cfgstring, x.Message);
                    return x is IOException { HResult: > 0 } io ? -io.HResult : -Libc.EINVAL;
                }
            case TcmuCommandKind.RemovedDevice:
                if (!devices.TryRemove((int)e.Minor, out var gone))
                    return null;
                await gone.StopAsync(orderly: false);
                return 0;
            case TcmuCommandKind.ReconfigDevice:
                if (!devices.TryGetValue((int)e.Minor, out var device))
                    return null;
                return await device.ReconfigAsync(e);
            default:
                return null;
        }
    }

    public Task ApplyAsync(RuntimeSettings settings)
    {
        if (settings.TcmuEnabled != running)
            Log.Warning("tcmu.enabled changed to {Value}; it takes effect at the next restart", settings.TcmuEnabled);
        return Task.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        if (dbus is not null)
            await dbus.DisposeAsync();
        events.Writer.TryComplete();
        if (eventPump is not null)
            await eventPump;
        foreach (var d in devices.Values)
            await d.StopAsync(orderly: true);
        devices.Clear();
        loop?.Dispose();
        netlink?.Dispose();
        Unlock();
        running = false;
    }
}
