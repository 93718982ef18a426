namespace HandlerRuntime.Sdk;

/// <summary>The result of <see cref="IHandler.CheckConfig"/>: valid, or a reason for the user.</summary>
/// <param name="IsValid">Whether the config can be opened.</param>
/// <param name="Reason">One sentence saying what is wrong; null when valid.</param>
public readonly record struct ConfigCheck(bool IsValid, string? Reason)
{
    /// <summary>The config is acceptable.</summary>
    public static ConfigCheck Valid => new(true, null);

    /// <summary>The config is not acceptable, for the given reason.</summary>
    public static ConfigCheck Invalid(string reason) => new(false, reason);
}
