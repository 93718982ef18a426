using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Handlers;

/// <summary>
/// The file handler moves data on the caller's thread when it cannot wait for a disk
/// (tmpfs; page-cache hits with RWF_NOWAIT) and on the thread pool otherwise. Both ways
/// keep what they are given, on tmpfs and on the disk filesystem under the temp directory,
/// concurrently, through flushes, and past a truncated end (zeros).
/// </summary>
public sealed class FileIoPathTests(BundledHandlers handlers) : IClassFixture<BundledHandlers>
{
    private const int Block = 512;

    // tmpfs where the machine has one, and the temp directory's filesystem (a disk here).
    public static TheoryData<string> Places => new(new[] { "/dev/shm", Path.GetTempPath() }.Where(Directory.Exists));

    [Theory]
    [MemberData(nameof(Places))]
    public async Task Concurrent_writes_and_reads_of_every_size_read_back(string place)
    {
        var path = Path.Combine(place, $"hrt-iopath-{Guid.NewGuid():N}.img");
        try
        {
            const int size = 8 << 20;
            await using var dev = await handlers.OpenAsync("file/" + path, size);
            var model = new byte[size];
            var rng = new Random(5);
            // Writes that do not overlap run concurrently; sizes from one block to 1 MiB.
            var writes = new List<Task>();
            for (var at = 0; at < size;)
            {
                var n = Math.Min(size - at, Block * rng.Next(1, 2049));
                var data = new byte[n];
                rng.NextBytes(data);
                data.CopyTo(model, at);
                writes.Add(dev.WriteAsync(at, data, WriteFlags.None, default).AsTask());
                at += n;
            }
            await Task.WhenAll(writes);
            await dev.FlushAsync(default);
            var read = new byte[size];
            var reads = new List<Task>();
            for (var at = 0; at < size; at += 96 * Block)
                reads.Add(dev.ReadAsync(at, read.AsMemory(at, Math.Min(96 * Block, size - at)), default).AsTask());
            await Task.WhenAll(reads);
            Assert.Equal(size, read.AsSpan().CommonPrefixLength(model));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [MemberData(nameof(Places))]
    public async Task Bursts_of_fua_and_plain_writes_read_back_after_reopen(string place)
    {
        var path = Path.Combine(place, $"hrt-iopath-{Guid.NewGuid():N}.img");
        try
        {
            const int blocks = 256;
            await using var dev = await handlers.OpenAsync("file/" + path, blocks * Block);
            var model = new byte[blocks * Block];
            var rng = new Random(9);
            // Bursts of FUA and plain writes share the device's write queue (one fdatasync per
            // burst); each burst is awaited before the next rewrites the same blocks.
            for (var burst = 0; burst < 20; burst++)
            {
                var writes = new List<Task>();
                for (var b = 0; b < blocks; b++)
                {
                    var data = new byte[Block];
                    rng.NextBytes(data);
                    data.CopyTo(model, b * Block);
                    var flags = rng.Next(3) == 0 ? WriteFlags.Fua : WriteFlags.None;
                    writes.Add(dev.WriteAsync(b * Block, data, flags, default).AsTask());
                }
                await Task.WhenAll(writes);
            }
            await using var reopened = await handlers.OpenAsync("file/" + path, blocks * Block);
            var read = new byte[model.Length];
            await reopened.ReadAsync(0, read, default);
            Assert.Equal(model.Length, read.AsSpan().CommonPrefixLength(model));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [MemberData(nameof(Places))]
    public async Task Past_a_truncated_end_reads_zeros(string place)
    {
        var path = Path.Combine(place, $"hrt-iopath-{Guid.NewGuid():N}.img");
        try
        {
            await using var dev = await handlers.OpenAsync("file/" + path, 1 << 20);
            var ones = Enumerable.Repeat((byte)0xA5, 64 << 10).ToArray();
            await dev.WriteAsync(0, ones, WriteFlags.None, default);
            using (var f = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
                f.SetLength(32 << 10); // cut under the device
            var read = new byte[64 << 10];
            read.AsSpan().Fill(0xFF);
            await dev.ReadAsync(0, read, default);
            Assert.True(read.AsSpan(0, 32 << 10).IndexOfAnyExcept((byte)0xA5) < 0);
            Assert.True(read.AsSpan(32 << 10).IndexOfAnyExcept((byte)0) < 0);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
