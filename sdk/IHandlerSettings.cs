using System.Text.Json.Nodes;

namespace HandlerRuntime.Sdk;

/// <summary>
/// Optional, on an <see cref="IHandler"/>: settings of its own in the runtime's config file,
/// under <c>handlers.&lt;subtype&gt;</c> (for example DRBD's resources). Values arrive as
/// JSON strings, objects and arrays (the config's layers, environment variables included,
/// carry no types). The runtime checks them when the config is loaded or reloaded, and a
/// handler's refusal refuses the whole config; it applies them before any LUN of the handler
/// opens, again after every reload that changed them, and to every new build of the plugin.
/// </summary>
public interface IHandlerSettings
{
    /// <summary>Validates <paramref name="settings"/> (null when the section is absent) without applying them; say what is wrong in one sentence.</summary>
    ConfigCheck CheckSettings(JsonObject? settings);

    /// <summary>Applies settings that passed <see cref="CheckSettings"/>.</summary>
    void ApplySettings(JsonObject? settings);
}
