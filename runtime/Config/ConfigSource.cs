using System.Security.Cryptography;
using Microsoft.Extensions.Configuration;

namespace HandlerRuntime.Config;

/// <summary>
/// Where the configuration comes from: a JSON file (or the built-in default when there
/// is none), then HRT_* environment variables, then the command line. Each load reads
/// all three afresh, so a reload sees the file as it is now.
/// </summary>
public sealed class ConfigSource(string? filePath, IReadOnlyDictionary<string, string?> commandLine)
{
    public const string EnvironmentPrefix = "HRT_";

    /// <summary>The config file, or null when running on the built-in default.</summary>
    public string? FilePath { get; } = filePath is null ? null : Path.GetFullPath(filePath);

    /// <summary>
    /// The file to use when --config is not given: HRT_CONFIG, ./conf/hrt.json, /etc/hrt/hrt.json,
    /// or none (the built-in default).
    /// </summary>
    public static string? DefaultFile()
    {
        if (Environment.GetEnvironmentVariable("HRT_CONFIG") is { Length: > 0 } env)
            return env;
        foreach (var candidate in new[] { Path.Combine("conf", "hrt.json"), "/etc/hrt/hrt.json" })
            if (File.Exists(candidate))
                return candidate;
        return null;
    }

    /// <summary>Reads every layer. Returns the configuration, or the reason the file cannot be used.</summary>
    public (IConfigurationRoot? Config, string? Error, string ContentHash) Load()
    {
        byte[] json;
        try
        {
            json = FilePath is null ? DefaultJson() : File.ReadAllBytes(FilePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (null, $"cannot read {FilePath}: {e.Message}", "");
        }
        var hash = Convert.ToHexString(SHA256.HashData(json));
        try
        {
            var root = new ConfigurationBuilder()
                .AddJsonStream(new MemoryStream(json))
                .AddEnvironmentVariables(EnvironmentPrefix)
                .AddInMemoryCollection(commandLine)
                .Build();
            return (root, null, hash);
        }
        catch (Exception e) when (e is FormatException or InvalidDataException or System.Text.Json.JsonException)
        {
            var inner = e.InnerException?.Message;
            return (null, $"{FilePath ?? "the built-in default"} is not valid JSON: {inner ?? e.Message}", hash);
        }
    }

    public static byte[] DefaultJson()
    {
        using var s = typeof(ConfigSource).Assembly.GetManifestResourceStream("HandlerRuntime.DefaultConfig.json")
            ?? throw new InvalidOperationException("the built-in default configuration is missing from the executable");
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }
}
