using HandlerRuntime.Plugins;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Luns;

/// <summary>A LUN the registry serves: its definition as resolved, its SCSI LU, and the plugin behind it.</summary>
public sealed class LunEntry
{
    internal LunEntry(LunDefinition definition, ScsiTarget target, int number, ScsiLun lun, IHandler handler, LoadedPlugin plugin, string stateDirectory)
    {
        Definition = definition;
        Target = target;
        Number = number;
        Lun = lun;
        Handler = handler;
        Plugin = plugin;
        StateDirectory = stateDirectory;
    }

    /// <summary>The definition with target and LUN number filled in, and the size if it was resized.</summary>
    public LunDefinition Definition { get; internal set; }
    public ScsiTarget Target { get; }
    public int Number { get; }
    public ScsiLun Lun { get; }
    public IHandler Handler { get; internal set; }
    public LoadedPlugin Plugin { get; internal set; }
    /// <summary>Every plugin the LUN's device stack uses (the top one and those of devices below it).</summary>
    public IReadOnlySet<LoadedPlugin> StackPlugins { get; internal set; } = new HashSet<LoadedPlugin>();
    public string StateDirectory { get; }

    /// <summary>
    /// The fabric that brought this LUN and owns its life (a TCMU device created with targetcli),
    /// or null for a LUN of the configuration. Such a LUN is served and listed like any other, but
    /// never persisted, never touched by a config reload, and not deleted or resized through the
    /// control API.
    /// </summary>
    public string? Fabric { get; internal init; }
    public string Name => Definition.Name;
    public long SizeBytes => Lun.BlockCount * Lun.BlockSize;
}
