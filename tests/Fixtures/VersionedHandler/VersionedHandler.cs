using System.Reflection;
using System.Text.Json.Nodes;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Fixtures;

/// <summary>
/// <c>versioned//&lt;path&gt;</c>: a file-backed disk whose build version is visible to
/// tests: in <c>hrt status</c> (IHasStatus, with the state directory and read-only setting
/// it was opened with) and as the answer to vendor opcode C1h. Vendor opcode C2h grows it
/// by 1 MiB and reports the new size as a device event.
/// </summary>
public sealed class VersionedHandler : IHandler, IHandlerSettings, IHandlerCommands
{
    private volatile string greeting = "hello";

    // Settings (handlers.versioned.greeting) and a verb (`hrt versioned greet <name>`), for the tests of both mechanisms.
    public ConfigCheck CheckSettings(JsonObject? settings)
        => settings?["greeting"]?.GetValue<string>() == "refuse-me" ? ConfigCheck.Invalid("greeting 'refuse-me' is refused, as the test asks") : ConfigCheck.Valid;

    public void ApplySettings(JsonObject? settings) => greeting = settings?["greeting"]?.GetValue<string>() ?? "hello";

    public IReadOnlyList<HandlerVerb> Verbs { get; } = [new("greet", "<name>", "Greets <name> with the configured greeting")];

    public ValueTask<HandlerCommandResult> RunAsync(string verb, IReadOnlyList<string> arguments, CancellationToken cancellationToken)
        => ValueTask.FromResult(arguments.Count == 1
            ? new HandlerCommandResult(true, $"{greeting}, {arguments[0]} (build {BuildVersion})", new JsonObject { ["greeting"] = greeting, ["name"] = arguments[0] })
            : new HandlerCommandResult(false, "greet takes one name; write hrt versioned greet <name>."));

    public static string BuildVersion { get; } =
        typeof(VersionedHandler).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0];

    public string Subtype => "versioned";

    public string ConfigHelp => $"versioned//<path>  test disk, build {BuildVersion}";

    public ConfigCheck CheckConfig(string config)
        => config.StartsWith('/') ? ConfigCheck.Valid : ConfigCheck.Invalid("give an absolute path");

    public ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken)
    {
        var size = context.RequestedSize > 0 ? context.RequestedSize : new FileInfo(context.Config).Length;
        var stream = new FileStream(context.Config, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite, 1, FileOptions.None);
        if (stream.Length < size)
            stream.SetLength(size);
        return ValueTask.FromResult<IBlockDevice>(new Device(stream, size, context));
    }

    private sealed class Device(FileStream file, long size, DeviceOpenContext context) : IBlockDevice, IScsiCommandHandler, IHasStatus
    {
        public DeviceGeometry Geometry { get; private set; } = DeviceGeometry.FromSize(size, 512);
        public DeviceCapabilities Capabilities => context.ReadOnly ? DeviceCapabilities.Flush : DeviceCapabilities.Write | DeviceCapabilities.Flush;
        public ThreadModel ThreadModel => ThreadModel.Parallel;

        public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
            => await RandomAccess.ReadAsync(file.SafeFileHandle, destination, offset, cancellationToken);

        public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
            => await RandomAccess.WriteAsync(file.SafeFileHandle, source, offset, cancellationToken);

        public ValueTask FlushAsync(CancellationToken cancellationToken)
        {
            file.Flush(flushToDisk: true);
            return default;
        }

        public ValueTask<ScsiCommandOutcome> HandleCommandAsync(IScsiCommand command, CancellationToken cancellationToken)
        {
            if (command.Cdb.Span[0] == 0xC2)
            {
                var grown = Geometry.SizeBytes + (1 << 20);
                file.SetLength(grown);
                Geometry = DeviceGeometry.FromSize(grown, 512);
                context.Events.Resized(grown);
                return ValueTask.FromResult(ScsiCommandOutcome.Good(0));
            }
            if (command.Cdb.Span[0] != 0xC1)
                return ValueTask.FromResult(ScsiCommandOutcome.NotHandled);
            var n = System.Text.Encoding.ASCII.GetBytes(BuildVersion, command.DataIn.Span);
            return ValueTask.FromResult(ScsiCommandOutcome.Good(n));
        }

        public JsonObject GetStatus() => new() { ["version"] = BuildVersion, ["stateDirectory"] = context.StateDirectory, ["readOnly"] = context.ReadOnly };

        public ValueTask DisposeAsync() => file.DisposeAsync();
    }
}
