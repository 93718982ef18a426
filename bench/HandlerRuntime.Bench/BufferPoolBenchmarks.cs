using BenchmarkDotNet.Attributes;
using HandlerRuntime.Buffers;

namespace HandlerRuntime.Bench;

/// <summary>Rent and return one pinned buffer of a size class.</summary>
[MemoryDiagnoser]
public class BufferPoolBenchmarks
{
    [Params(4096, 1 << 20)]
    public int Size { get; set; }

    [Benchmark]
    public int RentReturn()
    {
        var b = BufferPool.Shared.Rent(Size);
        var n = b.Array.Length;
        b.Dispose();
        return n;
    }
}
