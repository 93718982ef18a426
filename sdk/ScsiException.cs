namespace HandlerRuntime.Sdk;

/// <summary>
/// Fails the current command with CHECK CONDITION and the given sense, or with another
/// status. Throw it from any <see cref="IBlockDevice"/> operation or command hook;
/// only that command fails.
/// </summary>
public sealed class ScsiException : Exception
{
    /// <summary>Fails the command with CHECK CONDITION and <paramref name="sense"/>.</summary>
    public ScsiException(SenseData sense, string? message = null)
        : base(message ?? sense.ToString())
    {
        Sense = sense;
        Status = ScsiStatus.CheckCondition;
    }

    /// <summary>Fails the command with a status that carries no sense (BUSY, TASK SET FULL, RESERVATION CONFLICT).</summary>
    public ScsiException(ScsiStatus status, string? message = null)
        : base(message ?? status.ToString())
    {
        Status = status;
    }

    /// <summary>The status to return.</summary>
    public ScsiStatus Status { get; }

    /// <summary>The sense data, meaningful when <see cref="Status"/> is CHECK CONDITION.</summary>
    public SenseData Sense { get; }
}
