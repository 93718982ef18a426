using System.Globalization;

namespace HandlerRuntime.Fabrics.Tcmu;

/// <summary>
/// A TCMU device's name as its UIO device carries it: <c>tcm-user/&lt;hba&gt;/&lt;name&gt;/&lt;dev_config&gt;</c>,
/// where dev_config is <c>&lt;subtype&gt;/&lt;cfg&gt;</c>, the runtime's cfgstring.
/// </summary>
internal sealed record TcmuDeviceName(int Hba, string Name, string? Cfgstring)
{
    public const string Prefix = "tcm-user/";

    /// <summary>The subtype that routes the device to a handler, or null when dev_config is empty or has no '/'.</summary>
    public string? Subtype => Cfgstring is { } c && c.IndexOf('/') is > 0 and var slash ? c[..slash] : null;

    /// <summary>The configfs directory path below core/: <c>user_&lt;hba&gt;/&lt;name&gt;</c>.</summary>
    public string ConfigFsName => $"user_{Hba}/{Name}";

    /// <summary>Parses a UIO name; null when it is not a TCMU device's.</summary>
    public static TcmuDeviceName? Parse(string uioName)
    {
        var text = uioName.TrimEnd('\n', '\0');
        if (!text.StartsWith(Prefix, StringComparison.Ordinal))
            return null;
        var parts = text[Prefix.Length..].Split('/', 3);
        if (parts.Length < 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var hba) || parts[1].Length == 0)
            return null;
        return new TcmuDeviceName(hba, parts[1], parts.Length == 3 && parts[2].Length > 0 ? parts[2] : null);
    }
}

/// <summary>
/// The configfs and sysfs files of target_core_user a daemon reads and writes: a device's
/// geometry (info, attrib/), its actions (block_dev, reset_ring), and the module's netlink
/// switches (block_netlink, reset_netlink).
/// </summary>
internal static class TcmuConfigFs
{
    public const string CoreRoot = "/sys/kernel/config/target/core";
    public const string ModuleRoot = "/sys/module/target_core_user";
    public const string ModuleParameters = ModuleRoot + "/parameters";
    public const string UioClass = "/sys/class/uio";

    public static string DevicePath(TcmuDeviceName name) => Path.Combine(CoreRoot, name.ConfigFsName);

    public static bool ModuleLoaded => Directory.Exists(ModuleRoot);

    /// <summary>The size tcmu-runner reads: the number after " Size: " in the device's info file.</summary>
    public static long? ParseInfoSize(string info)
    {
        var at = info.IndexOf(" Size: ", StringComparison.Ordinal);
        if (at < 0)
            return null;
        var start = at + " Size: ".Length;
        var end = start;
        while (end < info.Length && char.IsAsciiDigit(info[end]))
            end++;
        return long.TryParse(info.AsSpan(start, end - start), NumberStyles.None, CultureInfo.InvariantCulture, out var size) ? size : null;
    }

    public static long? ReadSize(TcmuDeviceName name)
        => TryRead(Path.Combine(DevicePath(name), "info")) is { } info ? ParseInfoSize(info) : null;

    public static int? ReadAttribute(TcmuDeviceName name, string attribute)
        => TryRead(Path.Combine(DevicePath(name), "attrib", attribute)) is { } text && int.TryParse(text.Trim(), CultureInfo.InvariantCulture, out var v) ? v : null;

    /// <summary>Writes an action (block_dev, reset_ring); null when done, else why not.</summary>
    public static string? Action(TcmuDeviceName name, string action, string value)
        => TryWrite(Path.Combine(DevicePath(name), "action", action), value);

    public static bool HasAction(TcmuDeviceName name, string action) => File.Exists(Path.Combine(DevicePath(name), "action", action));

    /// <summary>Writes a module parameter (block_netlink, reset_netlink); null when done, else why not.</summary>
    public static string? SetModuleParameter(string parameter, string value) => TryWrite(Path.Combine(ModuleParameters, parameter), value);

    public static bool HasModuleParameter(string parameter) => File.Exists(Path.Combine(ModuleParameters, parameter));

    /// <summary>The TCMU devices registered as UIO devices: minor and name.</summary>
    public static IEnumerable<(int Minor, TcmuDeviceName Name)> ScanUio()
    {
        if (!Directory.Exists(UioClass))
            yield break;
        foreach (var dir in Directory.EnumerateDirectories(UioClass, "uio*").Order(StringComparer.Ordinal))
        {
            if (!int.TryParse(Path.GetFileName(dir).AsSpan(3), NumberStyles.None, CultureInfo.InvariantCulture, out var minor))
                continue;
            if (TryRead(Path.Combine(dir, "name")) is { } text && TcmuDeviceName.Parse(text) is { } name)
                yield return (minor, name);
        }
    }

    /// <summary>The exact size of UIO map 0, which mmap must be given.</summary>
    public static long? ReadMapSize(int minor)
    {
        var text = TryRead(Path.Combine(UioClass, $"uio{minor}", "maps", "map0", "size"))?.Trim();
        if (text is null)
            return null;
        if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            text = text[2..];
        return long.TryParse(text, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var size) ? size : null;
    }

    private static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static string? TryWrite(string path, string value)
    {
        try
        {
            // configfs and sysfs want one write() of the whole value.
            using var f = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1, FileOptions.None);
            var bytes = System.Text.Encoding.ASCII.GetBytes(value);
            f.Write(bytes, 0, bytes.Length);
            f.Flush();
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"{path}: {e.Message}";
        }
    }
}
