namespace HandlerRuntime.Sdk;

/// <summary>
/// Optional, on an <see cref="IBlockDevice"/>: full control of SCSI commands
/// (tcmu-runner's handle_cmd). The runtime offers every command that passed its own
/// checks (unit attention, reservations, LBA range) to this hook first; return
/// <see cref="ScsiCommandOutcome.NotHandled"/> to get the generic emulation.
/// </summary>
public interface IScsiCommandHandler
{
    /// <summary>Handles <paramref name="command"/>, or declines it.</summary>
    ValueTask<ScsiCommandOutcome> HandleCommandAsync(IScsiCommand command, CancellationToken cancellationToken);
}

/// <summary>One SCSI command as a handler sees it.</summary>
public interface IScsiCommand
{
    /// <summary>The CDB.</summary>
    ReadOnlyMemory<byte> Cdb { get; }

    /// <summary>Data from the initiator (write data, parameter lists); empty when none.</summary>
    ReadOnlyMemory<byte> DataOut { get; }

    /// <summary>
    /// Space for data to the initiator, as long as the initiator will accept; report how
    /// much was filled with <see cref="ScsiCommandOutcome.Good(int)"/>.
    /// </summary>
    Memory<byte> DataIn { get; }

    /// <summary>The initiator port's name (for iSCSI: <c>iqn...,i,0x&lt;ISID&gt;</c>).</summary>
    string InitiatorPort { get; }
}
