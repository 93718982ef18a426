using HandlerRuntime.Buffers;
using HandlerRuntime.Handlers.Ram;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging.Abstractions;

namespace HandlerRuntime.Bench;

/// <summary>A ram/@ LUN from the real ram handler, mapped as LUN 0 of a target, and one command run as a fabric runs it.</summary>
internal sealed class RamLun
{
    private static readonly TargetPort Port = new("iqn.2026-11.org.handler-runtime:bench,t,0x0001", "iqn.2026-11.org.handler-runtime:bench", 1, 1, 5);

    private RamLun(ScsiTarget target, ItNexus nexus)
    {
        Target = target;
        Nexus = nexus;
    }

    public ScsiTarget Target { get; }
    public ItNexus Nexus { get; }

    public static RamLun Create(long size = 256 << 20)
    {
        var device = new RamHandler().OpenAsync(new DeviceOpenContext
        {
            LunName = "bench",
            Config = "@",
            RequestedSize = size,
            RequestedBlockSize = 512,
            Logger = NullLogger.Instance,
            StateDirectory = Path.GetTempPath(),
            Events = NoEvents.Instance,
            NestedDevices = NoEvents.Instance,
        }, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        var lun = new ScsiLun(LunIdentity.FromName("bench", "ram"), device, readOnly: false, writeCache: true, new Serilog.LoggerConfiguration().CreateLogger());
        var target = new ScsiTarget(Port.TargetName);
        target.TryMap(0, lun);
        var nexus = new NexusTable().Get("iqn.2026-11.org.handler-runtime:bench-initiator,i,0x000000000001", "iqn.2026-11.org.handler-runtime:bench-initiator", Port);
        var rig = new RamLun(target, nexus);
        var task = new ScsiTask();
        for (var i = 0; i < 4; i++) // the power-on unit attention goes to the first command
            rig.Run(task, [0, 0, 0, 0, 0, 0], write: false, 0, check: false);
        return rig;
    }

    /// <summary>Runs one command to completion on this thread (ram completes synchronously) and recycles the task.</summary>
    public void Run(ScsiTask task, byte[] cdb, bool write, int bytes, bool check = true)
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
        if (check && task.Status != ScsiStatus.Good)
            throw new InvalidOperationException($"command failed: {task.Status} {task.Sense}");
        task.Reset();
    }

    public static byte[] Cdb10(byte opcode, uint lba, int blocks)
        => [opcode, 0, (byte)(lba >> 24), (byte)(lba >> 16), (byte)(lba >> 8), (byte)lba, 0, (byte)(blocks >> 8), (byte)blocks, 0];

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
