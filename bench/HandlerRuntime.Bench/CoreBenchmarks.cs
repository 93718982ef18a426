using BenchmarkDotNet.Attributes;
using HandlerRuntime.Scsi;

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
        lun = RamLun.Create();
        read = RamLun.Cdb10(0x28, 1024, Blocks);
        write = RamLun.Cdb10(0x2A, 1024, Blocks);
    }

    [Benchmark]
    public void Read() => lun.Run(task, read, write: false, Blocks * 512);

    [Benchmark]
    public void Write() => lun.Run(task, write, write: true, Blocks * 512);
}
