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

    /// <summary>
    /// The same geometry with physical blocks of <paramref name="physicalBytes"/> (for example
    /// the filesystem block or page size): initiators then align I/O and UNMAP to whole
    /// physical blocks, which the store can really deallocate. No effect when the logical
    /// block is already that large.
    /// </summary>
    public DeviceGeometry WithPhysicalBlockSize(int physicalBytes)
    {
        var perPhysical = Math.Max(1, physicalBytes / LogicalBlockSize);
        return this with { PhysicalBlockExponent = System.Numerics.BitOperations.Log2((uint)perPhysical), UnmapGranularityBlocks = perPhysical };
    }

    /// <summary>
    /// The same geometry with an unmap granularity of <paramref name="bytes"/> (for example the
    /// filesystem block or page size, the smallest range the store can really deallocate),
    /// reported as VPD B0h OPTIMAL UNMAP GRANULARITY.
    /// </summary>
    public DeviceGeometry WithUnmapGranularity(int bytes)
        => this with { UnmapGranularityBlocks = Math.Max(1, bytes / LogicalBlockSize) };

    /// <summary>Whether <paramref name="blockSize"/> is a block size SCSI initiators accept (512 to 4096, power of two).</summary>
    public static bool IsValidBlockSize(int blockSize)
        => blockSize is 512 or 1024 or 2048 or 4096;
}
