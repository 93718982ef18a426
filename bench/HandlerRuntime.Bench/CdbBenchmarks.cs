using BenchmarkDotNet.Attributes;
using HandlerRuntime.Scsi;
using HandlerRuntime.TestSupport;

namespace HandlerRuntime.Bench;

/// <summary>What the core does with a CDB before the device sees it: table lookup, field validation, LBA range decode, and the fabric's data-out length.</summary>
[MemoryDiagnoser]
public class CdbBenchmarks
{
    private readonly byte[] read10 = Cdbs.Read10(4096, 8);
    private readonly byte[] write16 = [0x8A, 0x08, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 8, 0, 0];

    [Benchmark]
    public ulong DecodeRead10()
    {
        var info = CommandTable.Find(read10)!;
        if (CommandDispatcher.Validate(info, read10) is not null)
            throw new InvalidOperationException();
        var (lba, blocks) = Cdb.Range(read10, info.Range);
        return lba + blocks;
    }

    [Benchmark]
    public long DecodeWrite16()
    {
        var info = CommandTable.Find(write16)!;
        if (CommandDispatcher.Validate(info, write16) is not null)
            throw new InvalidOperationException();
        var (lba, blocks) = Cdb.Range(write16, info.Range);
        return (long)lba + blocks + TransferLength.DataOutBytes(write16, 512)!.Value;
    }
}
