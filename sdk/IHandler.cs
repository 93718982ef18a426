namespace HandlerRuntime.Sdk;

/// <summary>
/// A storage handler: one per cfgstring subtype (the text before the first <c>/</c>).
/// The runtime discovers every public, non-abstract type implementing this interface
/// with a parameterless constructor in a plugin assembly, and keeps one instance per
/// loaded plugin. Members may be called from any thread.
/// </summary>
public interface IHandler
{
    /// <summary>The cfgstring subtype this handler serves, for example <c>file</c>.</summary>
    string Subtype { get; }

    /// <summary>Help for users: the accepted handler config forms, shown by <c>hrt handlers</c>.</summary>
    string ConfigHelp { get; }

    /// <summary>
    /// Validates a handler config (the cfgstring after <c>&lt;subtype&gt;/</c>) without
    /// opening anything. Say what is wrong in one sentence when it is invalid.
    /// </summary>
    ConfigCheck CheckConfig(string config);

    /// <summary>
    /// What a device opened from <paramref name="config"/> holds exclusively, so that a
    /// stacked device can claim its base (no other LUN or stack then opens it): by default the
    /// config itself; null when every open gets a store of its own (anonymous memory).
    /// </summary>
    string? ResourceKey(string config) => config;

    /// <summary>Opens the backing store described by <see cref="DeviceOpenContext.Config"/>.</summary>
    /// <exception cref="ScsiException">The device cannot be opened; the message is shown to the user.</exception>
    /// <exception cref="HandlerConfigException">The config or the requested size is wrong.</exception>
    ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken);
}
