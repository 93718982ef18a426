namespace HandlerRuntime.Sdk;

/// <summary>What a handler did with a command offered to <see cref="IScsiCommandHandler"/>.</summary>
public readonly struct ScsiCommandOutcome
{
    private ScsiCommandOutcome(bool handled, ScsiStatus status, SenseData sense, int dataInLength)
    {
        Handled = handled;
        Status = status;
        Sense = sense;
        DataInLength = dataInLength;
    }

    /// <summary>False when the runtime should emulate the command itself.</summary>
    public bool Handled { get; }

    /// <summary>The command's status.</summary>
    public ScsiStatus Status { get; }

    /// <summary>Sense data when <see cref="Status"/> is CHECK CONDITION.</summary>
    public SenseData Sense { get; }

    /// <summary>Bytes of <see cref="IScsiCommand.DataIn"/> filled.</summary>
    public int DataInLength { get; }

    /// <summary>Let the runtime's generic emulation handle the command.</summary>
    public static ScsiCommandOutcome NotHandled => default;

    /// <summary>Completed with GOOD status and <paramref name="dataInLength"/> bytes of data-in.</summary>
    public static ScsiCommandOutcome Good(int dataInLength = 0) => new(true, ScsiStatus.Good, default, dataInLength);

    /// <summary>Failed with CHECK CONDITION and <paramref name="sense"/>.</summary>
    public static ScsiCommandOutcome CheckCondition(SenseData sense) => new(true, ScsiStatus.CheckCondition, sense, 0);

    /// <summary>Completed with a status that carries no sense.</summary>
    public static ScsiCommandOutcome WithStatus(ScsiStatus status, int dataInLength = 0) => new(true, status, default, dataInLength);
}
