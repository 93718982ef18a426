using System.Text;
using HandlerRuntime.Sdk;
using Serilog;
using Tmds.DBus.Protocol;

namespace HandlerRuntime.Fabrics.Tcmu;

/// <summary>
/// tcmu-runner's D-Bus service on the system bus, so that targetcli (rtslib) lists a
/// <c>user:&lt;subtype&gt;</c> backstore for every subtype this runtime serves and checks
/// cfgstrings with it before creating a device. As tcmu-runner exports it (main.c,
/// tcmu-handler.xml): the bus name <c>org.kernel.TCMUService1</c>; an object manager at
/// <c>/org/kernel/TCMUService1</c> whose managed objects are <c>/org/kernel/TCMUService1/&lt;subtype&gt;</c>,
/// each with interface <c>org.kernel.TCMUService1</c> (property <c>ConfigDesc</c>, method
/// <c>CheckConfig(s) -> (b, s)</c>); and <c>/org/kernel/TCMUService1/HandlerManager1</c> with
/// <c>RegisterHandler(ss) -> (bs)</c>, by which another process announces a subtype it serves
/// itself (its CheckConfig is forwarded to it, and the TCMU fabric leaves its devices alone).
/// The objects are computed per call, so handlers hot-added to the handler folder appear at once.
/// </summary>
internal sealed class TcmuDbusService : IPathMethodHandler, IAsyncDisposable
{
    public const string BusName = "org.kernel.TCMUService1";
    public const string RootPath = "/org/kernel/TCMUService1";
    public const string HandlerInterface = "org.kernel.TCMUService1";
    public const string ManagerPath = RootPath + "/HandlerManager1";
    public const string ManagerInterface = "org.kernel.TCMUService1.HandlerManager1";
    private const string ObjectManagerInterface = "org.freedesktop.DBus.ObjectManager";
    private const string PropertiesInterface = "org.freedesktop.DBus.Properties";
    private const string IntrospectableInterface = "org.freedesktop.DBus.Introspectable";
    private const string PeerInterface = "org.freedesktop.DBus.Peer";

    private static readonly ReadOnlyMemory<byte> HandlerXml = Encoding.UTF8.GetBytes("""
        <interface name="org.kernel.TCMUService1">
          <property name="ConfigDesc" type="s" access="read"/>
          <method name="CheckConfig">
            <arg type="s" name="configstr" direction="in"/>
            <arg type="b" name="is_valid" direction="out"/>
            <arg type="s" name="message" direction="out"/>
          </method>
        </interface>
        """);

    private static readonly ReadOnlyMemory<byte> ManagerXml = Encoding.UTF8.GetBytes("""
        <interface name="org.kernel.TCMUService1.HandlerManager1">
          <method name="RegisterHandler">
            <arg type="s" name="subtype" direction="in"/>
            <arg type="s" name="cfgstr_desc" direction="in"/>
            <arg type="b" name="succeeded" direction="out"/>
            <arg type="s" name="message" direction="out"/>
          </method>
        </interface>
        """);

    private static readonly ReadOnlyMemory<byte> ObjectManagerXml = Encoding.UTF8.GetBytes("""
        <interface name="org.freedesktop.DBus.ObjectManager">
          <method name="GetManagedObjects">
            <arg type="a{oa{sa{sv}}}" name="object_paths_interfaces_and_properties" direction="out"/>
          </method>
        </interface>
        """);

    private readonly TcmuFabric fabric;
    private readonly ILogger log;
    private readonly DBusConnection connection;
    private readonly Dictionary<string, string> external = new(StringComparer.Ordinal); // subtype -> ConfigDesc, registered over D-Bus

    private TcmuDbusService(TcmuFabric fabric, ILogger log, DBusConnection connection)
    {
        this.fabric = fabric;
        this.log = log;
        this.connection = connection;
    }

    public string Path => RootPath;

    public bool HandlesChildPaths => true;

    /// <summary>Connects to the system bus and takes the name; null (with one log line saying why) when there is no bus or the name is taken.</summary>
    public static async Task<TcmuDbusService?> TryStartAsync(TcmuFabric fabric, ILogger log)
    {
        if (DBusAddress.System is not { } address)
        {
            log.Information("TCMU: no system D-Bus address; targetcli will not list this runtime's user: backstores (start dbus-daemon --system)");
            return null;
        }
        var connection = new DBusConnection(address);
        try
        {
            await connection.ConnectAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5));
            var service = new TcmuDbusService(fabric, log, connection);
            connection.AddMethodHandler(service);
            await connection.RequestNameAsync(BusName, RequestNameOptions.Default).WaitAsync(TimeSpan.FromSeconds(5));
            log.Information("TCMU: D-Bus service {Name} on the system bus: targetcli lists user:{Subtypes}", BusName, string.Join(", user:", service.Subtypes().Select(s => s.Subtype)));
            return service;
        }
        catch (Exception e) when (e is DBusConnectionException or DBusErrorReplyException or TimeoutException or IOException or System.Net.Sockets.SocketException)
        {
            connection.Dispose();
            log.Warning("TCMU: the D-Bus service {Name} is not available ({Reason}); the fabric serves devices, but targetcli will not list user: backstores for hrt's handlers. " +
                "Start dbus-daemon --system, install conf/org.kernel.TCMUService1.conf into /etc/dbus-1/system.d/, and stop tcmu-runner.", BusName, e.Message);
            return null;
        }
    }

    /// <summary>The subtypes shown to targetcli: the loaded handlers', then the ones registered over D-Bus.</summary>
    private List<(string Subtype, string ConfigDesc, bool External)> Subtypes()
    {
        var list = fabric.Plugins.Plugins.SelectMany(p => p.Handlers).Select(h => (h.Subtype, h.ConfigHelp, false)).ToList();
        lock (external)
            list.AddRange(external.Where(x => list.All(l => l.Subtype != x.Key)).Select(x => (x.Key, x.Value, true)));
        list.Sort((a, b) => string.CompareOrdinal(a.Subtype, b.Subtype));
        return list;
    }

    public async ValueTask HandleMethodAsync(MethodContext context)
    {
        var request = context.Request;
        var path = request.PathAsString ?? "";
        var iface = request.InterfaceAsString;
        var member = request.MemberAsString ?? "";
        var subtypes = Subtypes();
        var handler = path.StartsWith(RootPath + "/", StringComparison.Ordinal) && path != ManagerPath
            ? subtypes.FirstOrDefault(s => s.Subtype == path[(RootPath.Length + 1)..])
            : default;
        var isHandler = handler.Subtype is not null;

        if (iface == IntrospectableInterface && member == "Introspect")
        {
            if (path == RootPath)
                context.ReplyIntrospectXml([ObjectManagerXml], subtypes.Select(s => s.Subtype).Append("HandlerManager1").ToList());
            else if (path == ManagerPath)
                context.ReplyIntrospectXml([ManagerXml], Array.Empty<string>());
            else if (isHandler)
                context.ReplyIntrospectXml([HandlerXml], Array.Empty<string>());
            else
                context.ReplyIntrospectXml([], Array.Empty<string>());
            return;
        }
        if (iface == PeerInterface && member == "Ping")
        {
            using var w = context.CreateReplyWriter(null);
            context.Reply(w.CreateMessage());
            return;
        }
        if (path == RootPath && member == "GetManagedObjects" && iface is null or ObjectManagerInterface)
        {
            ReplyManagedObjects(context, subtypes);
            return;
        }
        if (path == ManagerPath && member == "RegisterHandler" && iface is null or ManagerInterface)
        {
            var r = request.GetBodyReader();
            var subtype = r.ReadString();
            var desc = r.ReadString();
            var (ok, message) = await RegisterAsync(subtype, desc);
            ReplyBoolString(context, ok, message);
            return;
        }
        if (isHandler && iface is null or HandlerInterface && member == "CheckConfig")
        {
            var cfgstring = context.Request.GetBodyReader().ReadString();
            var (ok, message) = handler.External ? await ForwardCheckAsync(handler.Subtype!, cfgstring) : Check(handler.Subtype!, cfgstring);
            ReplyBoolString(context, ok, message);
            return;
        }
        if (iface == PropertiesInterface && (isHandler || path == RootPath || path == ManagerPath))
        {
            var r = request.GetBodyReader();
            var wanted = r.ReadString();
            var props = isHandler && wanted == HandlerInterface ? handler.ConfigDesc : null;
            switch (member)
            {
                case "GetAll":
                {
                    using var w = context.CreateReplyWriter("a{sv}");
                    var d = w.WriteDictionaryStart();
                    if (props is not null)
                    {
                        w.WriteDictionaryEntryStart();
                        w.WriteString("ConfigDesc");
                        w.WriteVariantString(props);
                    }
                    w.WriteDictionaryEnd(d);
                    context.Reply(w.CreateMessage());
                    return;
                }
                case "Get" when props is not null && r.ReadString() == "ConfigDesc":
                {
                    using var w = context.CreateReplyWriter("v");
                    w.WriteVariantString(props);
                    context.Reply(w.CreateMessage());
                    return;
                }
                case "Set":
                    context.ReplyError("org.freedesktop.DBus.Error.PropertyReadOnly", "ConfigDesc is read-only");
                    return;
                default:
                    context.ReplyError("org.freedesktop.DBus.Error.InvalidArgs", $"no such property on {path}");
                    return;
            }
        }
        context.ReplyUnknownMethodError();
    }

    private static void ReplyBoolString(MethodContext context, bool ok, string message)
    {
        using var w = context.CreateReplyWriter("bs");
        w.WriteBool(ok);
        w.WriteString(message);
        context.Reply(w.CreateMessage());
    }

    private static void ReplyManagedObjects(MethodContext context, List<(string Subtype, string ConfigDesc, bool External)> subtypes)
    {
        using var w = context.CreateReplyWriter("a{oa{sa{sv}}}");
        var objects = w.WriteDictionaryStart();
        foreach (var (subtype, desc, _) in subtypes)
        {
            w.WriteDictionaryEntryStart();
            w.WriteObjectPath($"{RootPath}/{subtype}");
            var interfaces = w.WriteDictionaryStart();
            // As GDBus's object manager lists a skeleton: the standard interfaces with no properties, then ours.
            foreach (var standard in new[] { PropertiesInterface, IntrospectableInterface, PeerInterface })
            {
                w.WriteDictionaryEntryStart();
                w.WriteString(standard);
                w.WriteDictionaryEnd(w.WriteDictionaryStart());
            }
            w.WriteDictionaryEntryStart();
            w.WriteString(HandlerInterface);
            var props = w.WriteDictionaryStart();
            w.WriteDictionaryEntryStart();
            w.WriteString("ConfigDesc");
            w.WriteVariantString(desc);
            w.WriteDictionaryEnd(props);
            w.WriteDictionaryEnd(interfaces);
        }
        w.WriteDictionaryEnd(objects);
        context.Reply(w.CreateMessage());
    }

    /// <summary>tcmu-runner's CheckConfig: the whole cfgstring, subtype included; "success" when valid.</summary>
    private (bool, string) Check(string subtype, string cfgstring)
    {
        if (Luns.LunDefinition.SplitCfgstring(cfgstring) is not var (given, _))
            return (false, $"'{cfgstring}' has no '/': write {subtype}/<config>.");
        if (given != subtype)
            return (false, $"'{cfgstring}' is for subtype '{given}', not '{subtype}'.");
        var check = fabric.Luns.CheckConfig(cfgstring);
        log.Information("TCMU: D-Bus CheckConfig {Cfgstring}: {Outcome}", cfgstring, check.IsValid ? "valid" : check.Reason);
        return check.IsValid ? (true, "success") : (false, check.Reason ?? "invalid");
    }

    private async Task<(bool, string)> RegisterAsync(string subtype, string desc)
    {
        if (fabric.Plugins.TryGetHandler(subtype, out _, out var plugin))
            return (false, $"subtype '{subtype}' is served by hrt's {plugin.Name} handler plugin");
        var name = $"{ManagerInterface}.{subtype}";
        bool owned;
        try
        {
            owned = await NameHasOwnerAsync(name);
        }
        catch (Exception e) when (e is DBusConnectionException or DBusErrorReplyException)
        {
            return (false, $"the bus could not tell whether {name} has an owner: {e.Message}");
        }
        if (!owned)
            return (false, $"own the bus name {name} first: CheckConfig for user:{subtype} is forwarded to it");
        lock (external)
            external[subtype] = desc;
        log.Information("TCMU: subtype {Subtype} registered over D-Bus by {Name}; its devices are left to it", subtype, name);
        return (true, "succeeded");
    }

    private async Task<bool> NameHasOwnerAsync(string name)
    {
        MessageBuffer call;
        using (var w = connection.GetMessageWriter())
        {
            w.WriteMethodCallHeader("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", "s");
            w.WriteString(name);
            call = w.CreateMessage();
        }
        return await connection.CallMethodAsync(call, static (Message m, object? _) => m.GetBodyReader().ReadBool());
    }

    private async Task<(bool, string)> ForwardCheckAsync(string subtype, string cfgstring)
    {
        MessageBuffer call;
        using (var w = connection.GetMessageWriter())
        {
            w.WriteMethodCallHeader($"{ManagerInterface}.{subtype}", $"{ManagerPath}/{subtype}", HandlerInterface, "CheckConfig", "s");
            w.WriteString(cfgstring);
            call = w.CreateMessage();
        }
        try
        {
            return await connection.CallMethodAsync(call, static (Message m, object? _) =>
            {
                var r = m.GetBodyReader();
                return (r.ReadBool(), r.ReadString());
            });
        }
        catch (Exception e) when (e is DBusConnectionException or DBusErrorReplyException)
        {
            lock (external)
                external.Remove(subtype); // its owner is gone: so is the subtype
            return (false, $"the process that registered user:{subtype} did not answer ({e.Message}); it is no longer listed");
        }
    }

    public ValueTask DisposeAsync()
    {
        connection.Dispose();
        return ValueTask.CompletedTask;
    }
}
