namespace HandlerRuntime.Sdk;

/// <summary>Flags of one write.</summary>
[Flags]
public enum WriteFlags
{
    /// <summary>A plain write: durable after the next flush.</summary>
    None = 0,
    /// <summary>Force unit access: durable before completion.</summary>
    Fua = 1,
}

/// <summary>Flags of one write-zeroes operation.</summary>
[Flags]
public enum ZeroFlags
{
    /// <summary>The range must stay allocated.</summary>
    None = 0,
    /// <summary>The range may be deallocated (WRITE SAME with UNMAP).</summary>
    MayUnmap = 1,
    /// <summary>Durable before completion.</summary>
    Fua = 2,
}
