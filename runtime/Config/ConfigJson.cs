using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;

namespace HandlerRuntime.Config;

/// <summary>
/// A configuration section as JSON, for handlers' own settings: objects stay objects, a
/// section whose keys are 0..n-1 becomes an array, values are strings (the layers of the
/// configuration, environment variables included, carry no types).
/// </summary>
public static class ConfigJson
{
    public static JsonObject? ToJsonObject(IConfigurationSection section)
        => section.Exists() ? ToNode(section) as JsonObject ?? new JsonObject() : null;

    private static JsonNode? ToNode(IConfigurationSection section)
    {
        var children = section.GetChildren().ToList();
        if (children.Count == 0)
            return section.Value is { } v ? JsonValue.Create(v) : new JsonObject();
        if (children.Select((c, i) => c.Key == i.ToString(System.Globalization.CultureInfo.InvariantCulture)).All(x => x))
            return new JsonArray(children.Select(ToNode).ToArray());
        var o = new JsonObject();
        foreach (var c in children)
            o[c.Key] = ToNode(c);
        return o;
    }
}
