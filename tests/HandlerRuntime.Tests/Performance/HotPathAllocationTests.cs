using HandlerRuntime.Scsi;

namespace HandlerRuntime.Tests.Performance;

/// <summary>
/// The SCSI core's steady state allocates nothing per command (architecture.md, "The path
/// of one command"): READ and WRITE through <see cref="ScsiTarget.ExecuteAsync"/> to a
/// ram/@ device, with the task and its buffers reused as a fabric reuses them. An
/// allocation count, not a timing: the same on any machine.
/// </summary>
public sealed class HotPathAllocationTests
{
    private const int Commands = 2000;

    [Theory]
    [InlineData(0x28, 8)]     // READ(10), 4 KiB
    [InlineData(0x88, 8)]     // READ(16), 4 KiB
    [InlineData(0x28, 2048)]  // READ(10), 1 MiB
    [InlineData(0x2A, 8)]     // WRITE(10), 4 KiB
    [InlineData(0x8A, 8)]     // WRITE(16), 4 KiB
    [InlineData(0x2A, 2048)]  // WRITE(10), 1 MiB
    public async Task ReadAndWriteThroughTheCoreAllocateNothingInSteadyState(byte opcode, int blocks)
    {
        await using var rig = await RamLun.CreateAsync(64 << 20);
        var task = new ScsiTask();
        var write = opcode is 0x2A or 0x8A;
        var cdb = opcode switch
        {
            0x28 => Cdbs.Read10(64, (ushort)blocks),
            0x2A => Cdbs.Write10(64, (ushort)blocks),
            0x88 => Cdbs.Read16(64, (uint)blocks),
            _ => Cdbs.Write16(64, (uint)blocks),
        };

        // Warm-up: first-use allocations (the nexus's unit attention queue, buffer pool
        // classes, the abort token source, tiered JIT) happen here, not in the loop.
        for (var i = 0; i < 200; i++)
            rig.Run(task, cdb, write, blocks * 512);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < Commands; i++)
            rig.Run(task, cdb, write, blocks * 512);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
    }
}
