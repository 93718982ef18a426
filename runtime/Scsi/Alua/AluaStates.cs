namespace HandlerRuntime.Scsi.Alua;

/// <summary>ALUA state names as operators write them.</summary>
public static class AluaStates
{
    private static readonly (AsymmetricAccessState State, string Name, string Short)[] Names =
    [
        (AsymmetricAccessState.ActiveOptimized, "active-optimized", "ao"),
        (AsymmetricAccessState.ActiveNonOptimized, "active-non-optimized", "an"),
        (AsymmetricAccessState.Standby, "standby", "s"),
        (AsymmetricAccessState.Unavailable, "unavailable", "u"),
        (AsymmetricAccessState.Transitioning, "transitioning", "t"),
    ];

    public const string Accepted = "active-optimized, active-non-optimized, standby, unavailable or transitioning";

    public static string Name(AsymmetricAccessState state) => Names.First(n => n.State == state).Name;

    public static AsymmetricAccessState Parse(string text)
    {
        foreach (var n in Names)
            if (text.Equals(n.Name, StringComparison.OrdinalIgnoreCase) || text.Equals(n.Short, StringComparison.OrdinalIgnoreCase))
                return n.State;
        throw new FormatException($"'{text}' is not an ALUA state; use {Accepted}.");
    }
}
