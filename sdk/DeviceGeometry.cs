namespace HandlerRuntime.Sdk;

/// <summary>The shape of a device as SCSI initiators see it.</summary>
public sealed record DeviceGeometry
{
    /// <summary>Logical block size in bytes: 512, 1024, 2048 or 4096.</summary>
    public required int LogicalBlockSize { get; init; }

    /// <summary>Number of logical blocks.</summary>
    public required long BlockCount { get; init; }

    /// <summary>Logical blocks per physical block, as a power of two (READ CAPACITY(16)).</summary>
    public int PhysicalBlockExponent { get; init; }

    /// <summary>Optimal transfer length in blocks (VPD B0); 0 = not reported.</summary>
    public int OptimalTransferBlocks { get; init; }

    /// <summary>Largest transfer the device accepts in one command, in blocks (VPD B0); 0 = the runtime's limit.</summary>
    public int MaxTransferBlocks { get; init; }

    /// <summary>Unmap granularity in blocks (VPD B0).</summary>
    public int UnmapGranularityBlocks { get; init; } = 1;

    /// <summary>Size in bytes.</summary>
    public long SizeBytes => LogicalBlockSize * BlockCount;

    /// <summary>A geometry of <paramref name="sizeBytes"/> bytes (rounded down to whole blocks).</summary>
    public static DeviceGeometry FromSize(long sizeBytes, int logicalBlockSize)
        => new() { LogicalBlockSize = logicalBlockSize, BlockCount = sizeBytes / logicalBlockSize };

    /// <summary>Whether <paramref name="blockSize"/> is a block size SCSI initiators accept (512 to 4096, power of two).</summary>
    public static bool IsValidBlockSize(int blockSize)
        => blockSize is 512 or 1024 or 2048 or 4096;
}
