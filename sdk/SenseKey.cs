namespace HandlerRuntime.Sdk;

/// <summary>SCSI sense keys (SPC-4 table 51).</summary>
public enum SenseKey : byte
{
    /// <summary>No specific sense key.</summary>
    NoSense = 0x0,
    /// <summary>Recovered error.</summary>
    RecoveredError = 0x1,
    /// <summary>The logical unit is not ready.</summary>
    NotReady = 0x2,
    /// <summary>Unrecovered medium error.</summary>
    MediumError = 0x3,
    /// <summary>Non-recoverable hardware failure.</summary>
    HardwareError = 0x4,
    /// <summary>Illegal request: bad CDB or parameters.</summary>
    IllegalRequest = 0x5,
    /// <summary>Unit attention.</summary>
    UnitAttention = 0x6,
    /// <summary>Data protect: write protected or similar.</summary>
    DataProtect = 0x7,
    /// <summary>Blank check.</summary>
    BlankCheck = 0x8,
    /// <summary>Copy aborted.</summary>
    CopyAborted = 0xA,
    /// <summary>The command was aborted.</summary>
    AbortedCommand = 0xB,
    /// <summary>Source data did not match.</summary>
    Miscompare = 0xE,
}
