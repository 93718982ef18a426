using HandlerRuntime.Handlers.Ram;

namespace HandlerRuntime.Tests.Handlers;

/// <summary>The ram handler's page map, a word at a time, against a plain array of page states under random marks.</summary>
public sealed class PageMapTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Extents_match_a_page_by_page_model_under_random_writes_and_unmaps(int seed)
    {
        const int Page = 4096, Pages = 700; // not a multiple of 64: the last word is partial
        var map = new PageMap((long)Pages * Page, Page);
        var model = new bool[Pages];
        var random = new Random(seed);
        for (var step = 0; step < 2000; step++)
        {
            var offset = (long)random.Next(Pages) * Page + (random.Next(2) == 0 ? 0 : random.Next(1, Page / 512) * 512);
            var count = Math.Min((long)Pages * Page - offset, (long)random.Next(1, 300) * 512);
            if (random.Next(3) == 0)
            {
                map.MarkDeallocated(offset, count);
                for (var p = (offset + Page - 1) / Page; p < (offset + count) / Page; p++)
                    model[p] = false; // only pages wholly inside
            }
            else
            {
                map.MarkWritten(offset, count);
                for (var p = offset / Page; p < (offset + count + Page - 1) / Page; p++)
                    model[p] = true;
            }
            var at = (long)random.Next(Pages) * Page + random.Next(Page);
            var max = Math.Min((long)Pages * Page - at, (long)random.Next(1, Pages * 2) * 512);
            var (written, length) = map.Extent(at, max);
            var first = (int)(at / Page);
            Assert.Equal(model[first], written);
            var expectedEnd = first + 1;
            while (expectedEnd < Pages && (long)expectedEnd * Page < at + max && model[expectedEnd] == model[first])
                expectedEnd++;
            Assert.Equal(Math.Min(max, (long)expectedEnd * Page - at), length);
        }
    }
}
