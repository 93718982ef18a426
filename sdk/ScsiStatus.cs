namespace HandlerRuntime.Sdk;

/// <summary>SCSI status codes (SAM-5).</summary>
public enum ScsiStatus : byte
{
    /// <summary>The command completed.</summary>
    Good = 0x00,
    /// <summary>Sense data describes an error.</summary>
    CheckCondition = 0x02,
    /// <summary>PRE-FETCH: the range fits in the cache.</summary>
    ConditionMet = 0x04,
    /// <summary>The logical unit is busy; retry later.</summary>
    Busy = 0x08,
    /// <summary>A reservation held by another nexus forbids the command.</summary>
    ReservationConflict = 0x18,
    /// <summary>The task set is full; retry later.</summary>
    TaskSetFull = 0x28,
    /// <summary>An ACA condition exists.</summary>
    AcaActive = 0x30,
    /// <summary>The task was aborted by another I_T nexus (TAS).</summary>
    TaskAborted = 0x40,
}
