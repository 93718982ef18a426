using HandlerRuntime.Sdk;

namespace HandlerRuntime.Plugins;

/// <summary>A plugin folder loaded into its own context, with the handlers it provides.</summary>
public sealed class LoadedPlugin
{
    private readonly PluginLoadContext context;

    internal LoadedPlugin(string name, string folder, string mainAssembly, string fingerprint, PluginLoadContext context, IReadOnlyList<IHandler> handlers, string version)
    {
        Name = name;
        Folder = folder;
        MainAssembly = mainAssembly;
        Fingerprint = fingerprint;
        this.context = context;
        Handlers = handlers;
        Version = version;
        LoadedAt = DateTimeOffset.UtcNow;
    }

    public string Name { get; }
    public string Folder { get; }
    public string MainAssembly { get; }
    public string Version { get; }
    public DateTimeOffset LoadedAt { get; }
    internal string Fingerprint { get; }
    public IReadOnlyList<IHandler> Handlers { get; }

    /// <summary>Starts unloading the context; it goes once nothing references its types.</summary>
    internal WeakReference Unload()
    {
        var weak = new WeakReference(context);
        context.Unload();
        return weak;
    }

    public override string ToString() => $"{Name} ({MainAssembly})";
}
