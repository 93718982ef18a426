using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Handlers;

/// <summary>
/// file and ram devices keep what they are given: random writes read back, survive
/// flush, close and reopen; unmap and write zeroes read back as zeros; resize keeps data.
/// </summary>
public sealed class IntegrityTests(BundledHandlers handlers) : IClassFixture<BundledHandlers>
{
    private const int Block = 512;

    public static TheoryData<string> Persistent => new() { "file", "ram-file" };

    public static TheoryData<string> All => new() { "file", "ram-file", "ram-anon" };

    private static string Cfg(string kind, string path) => kind switch
    {
        "file" => "file/" + path,
        "ram-file" => "ram/" + path,
        _ => "ram/@",
    };

    /// <summary>Random writes of random sizes at random places, mirrored in memory, then compared.</summary>
    private static async Task RandomWritesAsync(IBlockDevice dev, byte[] model, int seed, int count)
    {
        var rng = new Random(seed);
        var blocks = model.Length / Block;
        for (var i = 0; i < count; i++)
        {
            var n = rng.Next(1, 65);
            var lba = rng.Next(0, blocks - n);
            var data = new byte[n * Block];
            rng.NextBytes(data);
            data.CopyTo(model, lba * Block);
            // Some writes with FUA, where the device offers it natively.
            var fua = rng.Next(4) == 0 && dev.Capabilities.HasFlag(DeviceCapabilities.Fua) ? WriteFlags.Fua : WriteFlags.None;
            await dev.WriteAsync((long)lba * Block, data, fua, default);
        }
    }

    private static async Task AssertContentAsync(IBlockDevice dev, byte[] model)
    {
        var read = new byte[model.Length];
        // Read in uneven chunks, concurrently, to exercise parallel reads.
        var chunks = new List<Task>();
        for (var off = 0; off < model.Length; off += 96 * Block)
        {
            var len = Math.Min(96 * Block, model.Length - off);
            chunks.Add(dev.ReadAsync(off, read.AsMemory(off, len), default).AsTask());
        }
        await Task.WhenAll(chunks);
        var at = read.AsSpan().CommonPrefixLength(model);
        Assert.True(at == model.Length, $"first difference at byte {at}");
    }

    [Theory]
    [MemberData(nameof(All))]
    public async Task Random_writes_read_back(string kind)
    {
        using var dir = new TempDir();
        const int size = 8 << 20;
        await using var dev = await handlers.OpenAsync(Cfg(kind, dir.File("d.img")), size);
        Assert.Equal(size / Block, dev.Geometry.BlockCount);
        var model = new byte[size];
        await RandomWritesAsync(dev, model, seed: 1, count: 400);
        await AssertContentAsync(dev, model);
    }

    [Theory]
    [MemberData(nameof(Persistent))]
    public async Task Flushed_data_survives_close_and_reopen(string kind)
    {
        using var dir = new TempDir();
        const int size = 4 << 20;
        var model = new byte[size];
        var path = dir.File("d.img");
        await using (var dev = await handlers.OpenAsync(Cfg(kind, path), size))
        {
            await RandomWritesAsync(dev, model, seed: 2, count: 300);
            Assert.True(dev.Capabilities.HasFlag(DeviceCapabilities.Flush));
            await dev.FlushAsync(default);
        }
        Assert.Equal(size, new FileInfo(path).Length);
        Assert.Equal(model, await File.ReadAllBytesAsync(path)); // the bytes are really in the file
        await using (var dev = await handlers.OpenAsync(Cfg(kind, path))) // size from the file
        {
            Assert.Equal(size / Block, dev.Geometry.BlockCount);
            await AssertContentAsync(dev, model);
        }
    }

    [Theory]
    [MemberData(nameof(All))]
    public async Task Unmap_and_write_zeroes_read_back_as_zeros_and_leave_neighbours_alone(string kind)
    {
        using var dir = new TempDir();
        const int size = 4 << 20;
        await using var dev = await handlers.OpenAsync(Cfg(kind, dir.File("d.img")), size);
        Assert.True(dev.Capabilities.HasFlag(DeviceCapabilities.Unmap | DeviceCapabilities.UnmapReadsZeroes | DeviceCapabilities.WriteZeroes));
        var model = new byte[size];
        new Random(3).NextBytes(model);
        await dev.WriteAsync(0, model, WriteFlags.None, default);

        // Unaligned to pages on purpose: a partial page at each edge must be zeroed, the rest kept.
        await dev.UnmapAsync(7 * Block, 300 * Block, default);
        Array.Clear(model, 7 * Block, 300 * Block);
        await dev.WriteZeroesAsync(1000 * Block, 77 * Block, ZeroFlags.None, default);
        Array.Clear(model, 1000 * Block, 77 * Block);
        await dev.WriteZeroesAsync(2001 * Block, 513 * Block, ZeroFlags.MayUnmap, default);
        Array.Clear(model, 2001 * Block, 513 * Block);
        await AssertContentAsync(dev, model);
    }

    [Theory]
    [MemberData(nameof(All))]
    public async Task Resize_grows_with_zeros_and_keeps_data(string kind)
    {
        using var dir = new TempDir();
        await using var dev = await handlers.OpenAsync(Cfg(kind, dir.File("d.img")), 1 << 20);
        var data = new byte[1 << 20];
        new Random(4).NextBytes(data);
        await dev.WriteAsync(0, data, WriteFlags.None, default);
        await dev.ResizeAsync(3 << 20, default);
        Assert.Equal((3 << 20) / Block, dev.Geometry.BlockCount);
        var all = new byte[3 << 20];
        await dev.ReadAsync(0, all, default);
        Assert.Equal(data, all[..(1 << 20)]);
        Assert.All(all[(1 << 20)..], b => Assert.Equal(0, b));
        await dev.WriteAsync((3 << 20) - Block, data.AsMemory(0, Block), WriteFlags.None, default);
    }

    [Fact]
    public async Task File_reports_holes_for_get_lba_status()
    {
        using var dir = new TempDir();
        const int size = 16 << 20;
        await using var dev = await handlers.OpenAsync("file/" + dir.File("sparse.img"), size);
        var status = Assert.IsAssignableFrom<IProvisioningStatus>(dev);
        var mb = new byte[1 << 20];
        Array.Fill(mb, (byte)0xAB);
        await dev.WriteAsync(4 << 20, mb, WriteFlags.None, default);

        var (mapped0, len0) = await status.GetExtentAsync(0, size, default);
        Assert.False(mapped0);
        Assert.Equal(4 << 20, len0);
        var (mapped1, len1) = await status.GetExtentAsync(4 << 20, size - (4 << 20), default);
        Assert.True(mapped1);
        Assert.Equal(1 << 20, len1);

        await dev.UnmapAsync(4 << 20, 1 << 20, default);
        var (mapped2, _) = await status.GetExtentAsync(4 << 20, size - (4 << 20), default);
        Assert.False(mapped2);
    }

    [Fact]
    public async Task Wrong_sizes_and_paths_are_refused_with_a_sentence()
    {
        using var dir = new TempDir();
        var path = dir.File("small.img");
        await File.WriteAllBytesAsync(path, new byte[1 << 20]);
        var bigger = await Assert.ThrowsAsync<HandlerConfigException>(() => handlers.OpenAsync("file/" + path, 512 * 1024));
        Assert.Contains("more than the requested size", bigger.Message);
        var anon = await Assert.ThrowsAsync<HandlerConfigException>(() => handlers.OpenAsync("ram/@"));
        Assert.Contains("give a size", anon.Message);
        var missing = await Assert.ThrowsAsync<HandlerConfigException>(() => handlers.OpenAsync("file/" + dir.File("nope.img")));
        Assert.Contains("does not exist; give a size", missing.Message);
        var ro = await handlers.OpenAsync("file/" + path, readOnly: true);
        Assert.False(ro.Capabilities.HasFlag(DeviceCapabilities.Write));
        await ro.DisposeAsync();
    }
}
