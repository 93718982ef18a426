using BenchmarkDotNet.Attributes;
using HandlerRuntime.Scsi;
using HandlerRuntime.TestSupport;

namespace HandlerRuntime.Bench;

/// <summary>One READ(10) and one WRITE(10) through ScsiTarget -> ScsiLun (task set, dispatcher checks) -> MediumCommands -> a ram/@ device.</summary>
[MemoryDiagnoser]
public class CoreBenchmarks
{
    private RamLun lun = null!;
    private readonly ScsiTask task = new();
    private byte[] read = null!, write = null!;

    [Params(8, 2048)] // 4 KiB, 1 MiB
    public int Blocks { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        lun = RamLun.CreateAsync(256 << 20).GetAwaiter().GetResult();
        read = Cdbs.Read10(1024, (ushort)Blocks);
        write = Cdbs.Write10(1024, (ushort)Blocks);
    }

    [GlobalCleanup]
    public void Cleanup() => lun.DisposeAsync().AsTask().GetAwaiter().GetResult();

    [Benchmark]
    public void Read() => lun.Run(task, read, write: false, Blocks * 512);

    [Benchmark]
    public void Write() => lun.Run(task, write, write: true, Blocks * 512);
}
