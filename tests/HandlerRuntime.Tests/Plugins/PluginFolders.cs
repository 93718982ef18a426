namespace HandlerRuntime.Tests.Plugins;

/// <summary>The two builds of the test plugin and helpers to drop them into a handler path.</summary>
internal static class PluginFolders
{
    public static string V1 => Path.Combine(AppContext.BaseDirectory, "plugins", "v1.0.0", "VersionedHandler");
    public static string V2 => Path.Combine(AppContext.BaseDirectory, "plugins", "v2.0.0", "VersionedHandler");
    public static string Stacking => Path.Combine(AppContext.BaseDirectory, "plugins", "stacking", "StackingHandler");
    /// <summary>The versioned fixture built against an SDK 99.0.0.</summary>
    public static string NextSdk => Path.Combine(AppContext.BaseDirectory, "plugins", "next-sdk", "VersionedHandler");

    /// <summary>Copies a plugin build into <paramref name="handlerPath"/>/<paramref name="folderName"/>, replacing what is there.</summary>
    public static void Install(string build, string handlerPath, string folderName = "VersionedHandler")
    {
        var dest = Path.Combine(handlerPath, folderName);
        Directory.CreateDirectory(dest);
        foreach (var file in Directory.EnumerateFiles(build))
        {
            var name = Path.GetFileName(file);
            if (folderName != Path.GetFileName(build))
                name = name.Replace("HandlerRuntime.Tests.VersionedHandler", folderName);
            File.Copy(file, Path.Combine(dest, name), overwrite: true);
        }
    }

    /// <summary>Copies the bundled handlers (File, Ram) into a handler path.</summary>
    public static void InstallBundled(string handlerPath)
    {
        foreach (var dir in Directory.EnumerateDirectories(RepoPaths.Handlers))
        {
            var dest = Path.Combine(handlerPath, Path.GetFileName(dir));
            Directory.CreateDirectory(dest);
            foreach (var file in Directory.EnumerateFiles(dir))
                File.Copy(file, Path.Combine(dest, Path.GetFileName(file)), overwrite: true);
        }
    }
}
