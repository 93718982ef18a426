namespace HandlerRuntime.Scsi;

/// <summary>SAM task attributes.</summary>
public enum TaskAttribute : byte
{
    Simple = 0,
    Ordered = 1,
    HeadOfQueue = 2,
    Aca = 3,
}

/// <summary>Which way data moves for a command, as the fabric announced it.</summary>
[Flags]
public enum DataDirection : byte
{
    None = 0,
    /// <summary>From the target to the initiator (READ).</summary>
    In = 1,
    /// <summary>From the initiator to the target (WRITE).</summary>
    Out = 2,
}
