using System.Reflection;

namespace HandlerRuntime.TestSupport;

/// <summary>Where the built runtime lives, found from the repository root.</summary>
public static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    /// <summary>Debug or Release, as this test assembly was built.</summary>
    public static string Configuration { get; } =
        typeof(RepoPaths).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";

    public static string RuntimeOutput => Path.Combine(Root, "runtime", "bin", Configuration, "net10.0");

    /// <summary>The `hrt` executable built with this configuration.</summary>
    public static string Hrt => Path.Combine(RuntimeOutput, "hrt");

    /// <summary>The bundled handler plugins beside it.</summary>
    public static string Handlers => Path.Combine(RuntimeOutput, "handlers");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "HandlerRuntime.sln")))
                return dir.FullName;
        throw new InvalidOperationException("HandlerRuntime.sln not found above " + AppContext.BaseDirectory);
    }
}
