using Microsoft.Extensions.Logging;

namespace HandlerRuntime.Sdk;

/// <summary>Everything a handler gets when the runtime opens a device for a LUN.</summary>
public sealed class DeviceOpenContext
{
    /// <summary>The LUN's name, unique in the runtime; useful in log messages.</summary>
    public required string LunName { get; init; }

    /// <summary>The handler config: the cfgstring after <c>&lt;subtype&gt;/</c>.</summary>
    public required string Config { get; init; }

    /// <summary>Requested size in bytes, or 0 to take the size from the backing store.</summary>
    public long RequestedSize { get; init; }

    /// <summary>Requested logical block size in bytes, or 0 for the handler's default (512 unless the store says otherwise).</summary>
    public int RequestedBlockSize { get; init; }

    /// <summary>True when the LUN is read-only: the handler should open its store read-only.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>A logger scoped to this LUN.</summary>
    public required ILogger Logger { get; init; }

    /// <summary>A directory private to this LUN for handler state (created by the runtime, kept across restarts).</summary>
    public required string StateDirectory { get; init; }

    /// <summary>Where the handler reports events the runtime must act on (lost connection, resize).</summary>
    public required IDeviceEvents Events { get; init; }

    /// <summary>Opens another cfgstring as a nested device, for handlers that stack on others.</summary>
    public required INestedDeviceOpener NestedDevices { get; init; }
}
