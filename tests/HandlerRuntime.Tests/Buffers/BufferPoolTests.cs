using HandlerRuntime.Buffers;

namespace HandlerRuntime.Tests.Buffers;

public sealed class BufferPoolTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(4096)]
    [InlineData(1 << 20)]
    [InlineData(16 << 20)]
    [InlineData((32 << 20) + 1)] // above the largest class: allocated, not pooled
    public void A_rented_buffer_returns_once_and_a_second_return_is_caught(int length)
    {
        var pool = new BufferPool(1 << 20);
        var b = pool.Rent(length);
        Assert.Equal(length, b.Length);
        Assert.True(b.Array.Length >= length);
        b.Dispose();
        Assert.Throws<InvalidOperationException>(b.Dispose);
    }

    [Fact]
    public void Returned_buffers_are_reused()
    {
        var pool = new BufferPool(1 << 20);
        var first = pool.Rent(3000);
        var array = first.Array;
        first.Dispose();
        var second = pool.Rent(4000);
        Assert.Same(array, second.Array);
        second.Dispose();
    }
}
