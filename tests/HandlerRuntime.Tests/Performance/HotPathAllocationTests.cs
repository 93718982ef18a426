using HandlerRuntime.Buffers;
using HandlerRuntime.Handlers.Ram;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging.Abstractions;

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
        await using var rig = await RamRig.StartAsync();
        var task = new ScsiTask();
        var write = opcode is 0x2A or 0x8A;
        var cdb = Cdb(opcode, lba: 64, blocks);

        // Warm-up: first-use allocations (the nexus's unit attention queue, buffer pool
        // classes, the abort token source, tiered JIT) happen here, not in the loop.
        for (var i = 0; i < 200; i++)
            rig.RunOnce(task, cdb, write, blocks * 512);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < Commands; i++)
            rig.RunOnce(task, cdb, write, blocks * 512);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
    }

    private static byte[] Cdb(byte opcode, long lba, int blocks)
    {
        if (opcode is 0x28 or 0x2A)
            return [opcode, 0, (byte)(lba >> 24), (byte)(lba >> 16), (byte)(lba >> 8), (byte)lba, 0, (byte)(blocks >> 8), (byte)blocks, 0];
        var cdb = new byte[16];
        cdb[0] = opcode;
        for (var i = 0; i < 8; i++)
            cdb[2 + i] = (byte)(lba >> (56 - 8 * i));
        cdb[10] = (byte)(blocks >> 24);
        cdb[11] = (byte)(blocks >> 16);
        cdb[12] = (byte)(blocks >> 8);
        cdb[13] = (byte)blocks;
        return cdb;
    }
}

/// <summary>A ram/@ LUN from the real ram handler behind a target, and one command run the way a fabric runs it.</summary>
internal sealed class RamRig : IAsyncDisposable
{
    private RamRig(ScsiTarget target, ItNexus nexus, IBlockDevice device)
    {
        Target = target;
        Nexus = nexus;
        Device = device;
    }

    public ScsiTarget Target { get; }
    public ItNexus Nexus { get; }
    public IBlockDevice Device { get; }

    public static async Task<RamRig> StartAsync(long size = 64 << 20)
    {
        var device = await new RamHandler().OpenAsync(new DeviceOpenContext
        {
            LunName = "alloc",
            Config = "@",
            RequestedSize = size,
            RequestedBlockSize = 512,
            Logger = NullLogger.Instance,
            StateDirectory = Path.GetTempPath(),
            Events = NoEvents.Instance,
            NestedDevices = NoEvents.Instance,
        }, CancellationToken.None);
        var harness = new ScsiHarness(device, "alloc", "ram");
        await harness.ClearUnitAttentionAsync();
        return new RamRig(harness.Target, harness.Nexus, device);
    }

    /// <summary>Runs one command; ram completes synchronously, so the whole command runs on this thread.</summary>
    public void RunOnce(ScsiTask task, byte[] cdb, bool write, int bytes)
    {
        task.Nexus = Nexus;
        task.Lun = 0;
        task.Attribute = TaskAttribute.Simple;
        task.SetCdb(cdb);
        if (write)
        {
            task.Direction = DataDirection.Out;
            task.DataOutBuffer = BufferPool.Shared.Rent(bytes);
            task.DataOutLength = bytes;
            task.ExpectedDataOutLength = bytes;
        }
        else
        {
            task.Direction = DataDirection.In;
            task.ExpectedDataInLength = bytes;
        }
        var run = Target.ExecuteAsync(task);
        if (!run.IsCompletedSuccessfully)
            throw new InvalidOperationException("a ram command did not complete synchronously");
        run.GetAwaiter().GetResult();
        if (task.Status != ScsiStatus.Good)
            throw new InvalidOperationException($"command failed: {task.Status} {task.Sense}");
        task.Reset();
    }

    public ValueTask DisposeAsync() => Device.DisposeAsync();

    private sealed class NoEvents : IDeviceEvents, INestedDeviceOpener
    {
        public static readonly NoEvents Instance = new();
        public void ConnectionLost(string reason) { }
        public void ConnectionRestored() { }
        public void LockLost(string reason) { }
        public void Resized(long newSizeBytes) { }
        public ValueTask<IBlockDevice> OpenAsync(string cfgstring, long size, int blockSize, CancellationToken cancellationToken)
            => throw new NotSupportedException();
    }
}
