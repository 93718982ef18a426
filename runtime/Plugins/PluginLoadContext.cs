using System.Reflection;
using System.Runtime.Loader;

namespace HandlerRuntime.Plugins;

/// <summary>
/// One plugin's private, collectible load context. Its own dependencies come from its
/// folder (through its deps.json); the SDK and what the SDK references always come from
/// the host, so that IHandler in the plugin is the host's IHandler. Assemblies are read
/// into memory rather than mapped, so a plugin's files can be replaced while it runs.
/// </summary>
internal sealed class PluginLoadContext(string mainAssemblyPath, IReadOnlySet<string> sharedAssemblies)
    : AssemblyLoadContext($"plugin:{Path.GetFileName(Path.GetDirectoryName(mainAssemblyPath))}", isCollectible: true)
{
    private readonly AssemblyDependencyResolver resolver = new(mainAssemblyPath);

    public Assembly LoadMain() => LoadFromFile(mainAssemblyPath);

    protected override Assembly? Load(AssemblyName name)
    {
        if (name.Name is not null && sharedAssemblies.Contains(name.Name))
            return null; // from the host's (default) context
        var path = resolver.ResolveAssemblyToPath(name);
        return path is null ? null : LoadFromFile(path);
    }

    protected override nint LoadUnmanagedDll(string unmanagedDllName)
    {
        var path = resolver.ResolveUnmanagedDllToPath(unmanagedDllName);
        return path is null ? 0 : LoadUnmanagedDllFromPath(path);
    }

    private Assembly LoadFromFile(string path)
    {
        using var image = new MemoryStream(File.ReadAllBytes(path));
        var pdbPath = Path.ChangeExtension(path, ".pdb");
        if (!File.Exists(pdbPath))
            return LoadFromStream(image);
        using var pdb = new MemoryStream(File.ReadAllBytes(pdbPath));
        return LoadFromStream(image, pdb);
    }
}
