using System.Buffers.Binary;
using HandlerRuntime.Handlers.Qcow;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Qcow.Tests;

/// <summary>Feature bits, header preservation, refusals with a sentence, refcount growth and concurrency.</summary>
public sealed class FeatureTests
{
    private static async Task<string> CreateAsync(TempDir dir, string options = "compat=1.1", string size = "4M", string name = "image.qcow2")
    {
        var path = dir.File(name);
        await Qemu.ImgOkAsync("create", "-q", "-f", "qcow2", "-o", options, path, size);
        return path;
    }

    [Fact]
    public async Task An_unknown_incompatible_feature_bit_refuses_the_image()
    {
        using var dir = new TempDir("qcow-feature");
        var path = await CreateAsync(dir);
        await HeaderEdit.SetBitsAsync(path, HeaderEdit.IncompatibleField, 1UL << 10);
        var e = await Assert.ThrowsAsync<HandlerConfigException>(() => Handler.OpenAsync(path, readOnly: true));
        Assert.Contains("incompatible qcow2 features", e.Message);
        Assert.Contains("bit 10", e.Message);
    }

    [Fact]
    public async Task The_corrupt_bit_serves_the_image_read_only()
    {
        using var dir = new TempDir("qcow-feature");
        var path = await CreateAsync(dir);
        await Qemu.IoAsync(path, "qcow2", "write -P 0x44 0 64k");
        await HeaderEdit.SetBitsAsync(path, HeaderEdit.IncompatibleField, 1UL << 1);
        var expected = await Qemu.ToRawAsync(path);
        var before = await File.ReadAllBytesAsync(path);
        await using (var device = await Handler.OpenAsync(path))
        {
            Assert.Equal(DeviceCapabilities.None, device.Capabilities);
            Handler.AssertSameBytes(expected, await Handler.ReadAllAsync(device), "corrupt image read");
        }
        Assert.Equal(before, await File.ReadAllBytesAsync(path));
    }

    [Fact]
    public async Task A_dirty_image_with_lazy_refcounts_gets_its_refcounts_rebuilt_on_open()
    {
        using var dir = new TempDir("qcow-feature");
        var path = await CreateAsync(dir, "compat=1.1,lazy_refcounts=on,cluster_size=4k");
        // QEMU itself leaves the image dirty: lazy refcounts, then abort without closing.
        var r = await ProcessRunner.RunAsync(ProcessRunner.Require("qemu-io"), ["-f", "qcow2", "-c", "write -P 0x21 0 300k", "-c", "write -P 0x22 1m 64k", "-c", "flush", "-c", "abort", path]);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Equal(1UL, await HeaderEdit.ReadFieldAsync(path, HeaderEdit.IncompatibleField) & 1);
        // Make the stale refcounts plainly wrong: wipe the first refcount block.
        var c0 = await HeaderEdit.ReadClusterZeroAsync(path, 512);
        var table = (long)BinaryPrimitives.ReadUInt64BigEndian(c0.AsSpan(48));
        var bytes = await File.ReadAllBytesAsync(path);
        var block = (long)BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)table)) & ~0x1FFL;
        Array.Clear(bytes, (int)block, 4096);
        await File.WriteAllBytesAsync(path, bytes);
        Assert.NotEqual(0, (await Qemu.CheckAsync(path)).ExitCode);
        var expected = await Qemu.ToRawAsync(path);

        await using (var device = await Handler.OpenAsync(path))
        {
            await device.WriteAsync(2 << 20, new byte[8192].Select(_ => (byte)0x23).ToArray(), WriteFlags.None, CancellationToken.None);
            new byte[8192].Select(_ => (byte)0x23).ToArray().CopyTo(expected, 2 << 20);
        }
        Assert.Equal(0UL, await HeaderEdit.ReadFieldAsync(path, HeaderEdit.IncompatibleField) & 1);
        await Qemu.AssertCheckCleanAsync(path);
        await Qemu.AssertSameAsRawAsync(path, expected);
    }

    [Fact]
    public async Task Unknown_autoclear_bits_are_cleared_before_writing_and_kept_when_read_only()
    {
        using var dir = new TempDir("qcow-feature");
        var path = await CreateAsync(dir);
        await HeaderEdit.SetBitsAsync(path, HeaderEdit.AutoclearField, 1UL << 7);
        await using (await Handler.OpenAsync(path, readOnly: true)) { }
        Assert.Equal(1UL << 7, await HeaderEdit.ReadFieldAsync(path, HeaderEdit.AutoclearField));
        await using (var device = await Handler.OpenAsync(path))
            await device.WriteAsync(0, new byte[512], WriteFlags.Fua, CancellationToken.None);
        Assert.Equal(0UL, await HeaderEdit.ReadFieldAsync(path, HeaderEdit.AutoclearField));
        await Qemu.AssertCheckCleanAsync(path);
    }

    [Fact]
    public async Task Unknown_header_extensions_and_fields_survive_writes()
    {
        using var dir = new TempDir("qcow-feature");
        var path = await CreateAsync(dir, "compat=1.1,cluster_size=4k");
        var payload = "kept by every writer"u8.ToArray();
        await HeaderEdit.AddExtensionAsync(path, 0x5EED0001, payload);
        var before = await HeaderEdit.ReadClusterZeroAsync(path, 4096);
        var model = new byte[4 << 20];
        await using (var device = await Handler.OpenAsync(path))
        {
            var random = new Random(3);
            for (var i = 0; i < 200; i++)
            {
                var (offset, length) = MatrixTests.RandomRange(random, model.Length);
                var data = new byte[length];
                random.NextBytes(data);
                await device.WriteAsync(offset, data, WriteFlags.None, CancellationToken.None);
                data.CopyTo(model, offset);
            }
        }
        var after = await HeaderEdit.ReadClusterZeroAsync(path, 4096);
        // Only the refcount table location (48-59) may change (the table grows); every other byte is as it was.
        Assert.Equal(before[..48], after[..48]);
        Assert.Equal(before[60..], after[60..]);
        Assert.Contains(HeaderEdit.Extensions(after), e => e.Type == 0x5EED0001 && after.AsSpan(e.Offset, e.Length).SequenceEqual(payload));
        await Qemu.AssertCheckCleanAsync(path);
        await Qemu.AssertSameAsRawAsync(path, model);
    }

    [Fact]
    public async Task The_refcount_table_grows_when_the_image_outgrows_it()
    {
        using var dir = new TempDir("qcow-feature");
        var path = await CreateAsync(dir, "compat=1.1,cluster_size=512,refcount_bits=64", "8M");
        var tableBefore = await HeaderEdit.ReadFieldAsync(path, 48);
        var model = new byte[8 << 20];
        new Random(9).NextBytes(model);
        await using (var device = await Handler.OpenAsync(path, options: "cache=64K"))
            for (var at = 0; at < model.Length; at += 256 << 10)
                await device.WriteAsync(at, model.AsMemory(at, 256 << 10), WriteFlags.None, CancellationToken.None);
        Assert.NotEqual(tableBefore, await HeaderEdit.ReadFieldAsync(path, 48));
        await Qemu.AssertCheckCleanAsync(path);
        await Qemu.AssertSameAsRawAsync(path, model);
    }

    [Fact]
    public async Task Concurrent_commands_on_shared_clusters_end_in_the_expected_image()
    {
        using var dir = new TempDir("qcow-feature");
        var path = await CreateAsync(dir, "compat=1.1,cluster_size=64k");
        const int Tasks = 8, Stripe = 4096;
        var model = new byte[4 << 20];
        await using (var device = await Handler.OpenAsync(path, options: "cache=64K"))
        {
            Assert.Equal(ThreadModel.Parallel, device.ThreadModel);
            // Task t owns every 4 KiB stripe s with s % Tasks == t: tasks share every 64 KiB cluster, never a byte.
            await Parallel.ForAsync(0, Tasks, new ParallelOptions { MaxDegreeOfParallelism = Tasks }, async (t, _) =>
            {
                var random = new Random(t);
                var stripes = model.Length / Stripe / Tasks;
                for (var i = 0; i < 150; i++)
                {
                    var offset = (long)(random.Next(stripes) * Tasks + t) * Stripe;
                    var choice = random.Next(10);
                    if (choice < 6)
                    {
                        var data = new byte[Stripe];
                        random.NextBytes(data);
                        await device.WriteAsync(offset, data, WriteFlags.None, CancellationToken.None);
                        lock (model)
                            data.CopyTo(model, offset);
                    }
                    else if (choice < 8)
                    {
                        await device.UnmapAsync(offset, Stripe, CancellationToken.None);
                        lock (model)
                            Array.Clear(model, (int)offset, Stripe);
                    }
                    else if (choice < 9)
                        await device.FlushAsync(CancellationToken.None);
                    else
                    {
                        var read = new byte[Stripe];
                        await device.ReadAsync(offset, read, CancellationToken.None);
                        byte[] expected;
                        lock (model)
                            expected = model.AsSpan((int)offset, Stripe).ToArray();
                        Handler.AssertSameBytes(expected, read, $"task {t} reading its own stripe");
                    }
                }
            });
        }
        await Qemu.AssertCheckCleanAsync(path);
        await Qemu.AssertSameAsRawAsync(path, model);
    }

    [Fact]
    public async Task A_write_into_a_compressed_cluster_rewrites_it_uncompressed()
    {
        using var dir = new TempDir("qcow-feature");
        var raw = dir.File("content.raw");
        await File.WriteAllBytesAsync(raw, Enumerable.Range(0, 1 << 20).Select(i => (byte)(i / 1000)).ToArray());
        var path = dir.File("image.qcow2");
        await Qemu.ImgOkAsync("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "compression_type=zstd", raw, path);
        var model = await File.ReadAllBytesAsync(raw);
        await using (var device = await Handler.OpenAsync(path))
        {
            await device.WriteAsync(65536 + 512, new byte[1024], WriteFlags.None, CancellationToken.None);
            Array.Clear(model, 65536 + 512, 1024);
        }
        var map = await Qemu.ImgOkAsync("map", "--output=json", "-f", "qcow2", path);
        // qemu-img map gives a host offset for plain clusters only, not for compressed ones.
        Assert.Contains("{ \"start\": 65536, \"length\": 65536, \"depth\": 0, \"present\": true, \"zero\": false, \"data\": true, \"offset\": ", map);
        Assert.Contains("{ \"start\": 0, \"length\": 65536, \"depth\": 0, \"present\": true, \"zero\": false, \"data\": true}", map); // its neighbours stay compressed
        await Qemu.AssertCheckCleanAsync(path);
        await Qemu.AssertSameAsRawAsync(path, model);
    }

    [Theory]
    [InlineData("data_file", "external data file")]
    [InlineData("luks", "encrypted")]
    public async Task Images_the_handler_cannot_serve_are_refused_with_a_sentence(string kind, string expected)
    {
        using var dir = new TempDir("qcow-feature");
        var path = dir.File("image.qcow2");
        if (kind == "data_file")
            await Qemu.ImgOkAsync("create", "-q", "-f", "qcow2", "-o", $"data_file={dir.File("data.raw")}", path, "4M");
        else
        {
            // The handler decides from the header's crypt method (bytes 32-35: 2 = LUKS). qemu-img's own
            // LUKS creation benchmarks PBKDF on the CPU and fails on a loaded machine, so the field is set directly.
            await Qemu.ImgOkAsync("create", "-q", "-f", "qcow2", path, "4M");
            var l1Entries = await HeaderEdit.ReadFieldAsync(path, 32) & 0xFFFF_FFFF; // keep bytes 36-39 (L1 entries)
            await HeaderEdit.WriteFieldAsync(path, 32, (2UL << 32) | l1Entries);
        }
        var e = await Assert.ThrowsAsync<HandlerConfigException>(() => Handler.OpenAsync(path, readOnly: true));
        Assert.Contains(expected, e.Message);
        Assert.EndsWith(".", e.Message);
    }

    [Fact]
    public async Task Sizes_that_differ_from_the_image_are_refused()
    {
        using var dir = new TempDir("qcow-feature");
        var path = await CreateAsync(dir, size: "4M");
        var e = await Assert.ThrowsAsync<HandlerConfigException>(() => Handler.OpenAsync(path, size: 8 << 20));
        Assert.Contains("has a virtual size of 4194304 bytes, not the requested 8388608", e.Message);
        await using (var same = await Handler.OpenAsync(path, size: 4 << 20, blockSize: 4096))
            Assert.Equal(1024, same.Geometry.BlockCount);
        var odd = await CreateAsync(dir, size: "4097K", name: "odd.qcow2");
        var e2 = await Assert.ThrowsAsync<HandlerConfigException>(() => Handler.OpenAsync(odd, blockSize: 4096));
        Assert.Contains("not a whole number of 4096-byte blocks", e2.Message);
    }

    [Fact]
    public async Task Missing_files_and_non_qcow_files_are_refused_with_a_sentence()
    {
        using var dir = new TempDir("qcow-feature");
        var missing = await Assert.ThrowsAsync<HandlerConfigException>(() => Handler.OpenAsync(dir.File("none.qcow2")));
        Assert.Contains("does not exist", missing.Message);
        await File.WriteAllBytesAsync(dir.File("raw.img"), new byte[1 << 20]);
        var raw = await Assert.ThrowsAsync<HandlerConfigException>(() => Handler.OpenAsync(dir.File("raw.img")));
        Assert.Contains("is not a qcow2 or qcow image", raw.Message);
        await File.WriteAllBytesAsync(dir.File("base.raw"), new byte[4 << 20]);
        var top = dir.File("top.qcow2");
        await Qemu.ImgOkAsync("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", top, "4M");
        File.Delete(dir.File("base.raw"));
        var backing = await Assert.ThrowsAsync<HandlerConfigException>(() => Handler.OpenAsync(top));
        Assert.Contains($"the backing file {dir.File("base.raw")} of {top} does not exist", backing.Message);
    }

    [Fact]
    public async Task Qcow_v1_images_are_served_read_only_when_the_lun_is()
    {
        using var dir = new TempDir("qcow-feature");
        var path = dir.File("image.qcow");
        await Qemu.ImgOkAsync("create", "-q", "-f", "qcow", path, "4M");
        await using (var readOnly = await Handler.OpenAsync(path, readOnly: true))
            Assert.Equal(DeviceCapabilities.None, readOnly.Capabilities);
        await using var device = await Handler.OpenAsync(path);
        Assert.Equal(DeviceCapabilities.Write | DeviceCapabilities.Flush | DeviceCapabilities.Fua, device.Capabilities);
        Assert.Equal(4L << 20, device.Geometry.SizeBytes);
    }

    [Fact]
    public async Task Get_lba_status_tells_data_from_zeros()
    {
        using var dir = new TempDir("qcow-feature");
        var path = await CreateAsync(dir, "compat=1.1,cluster_size=64k");
        await Qemu.IoAsync(path, "qcow2", "write -P 0x12 0 128k", "write -z 128k 64k");
        await using var device = await Handler.OpenAsync(path, readOnly: true);
        var status = (IProvisioningStatus)device;
        Assert.Equal((true, 128L << 10), await status.GetExtentAsync(0, 1 << 20, CancellationToken.None));
        Assert.Equal((false, 512L << 10), await status.GetExtentAsync(128 << 10, 512 << 10, CancellationToken.None));
    }

    [Theory]
    [InlineData("/var/lib/hrt/vm.qcow2", true, null)]
    [InlineData("/var/lib/hrt/vm.qcow2?cache=16M", true, null)]
    [InlineData("/var/lib/hrt/odd?name.qcow2?", true, null)]
    [InlineData("var/lib/vm.qcow2", false, "is not an absolute path")]
    [InlineData("/var/lib/hrt/", false, "names a directory")]
    [InlineData("/vm.qcow2?cache=1K", false, "is not a size from 64K to 1G")]
    [InlineData("/vm.qcow2?cache=lots", false, "is not a size from 64K to 1G")]
    [InlineData("/vm.qcow2?speed=fast", false, "'speed' is not a qcow option")]
    public void Configs_are_checked_without_opening_anything(string config, bool valid, string? reason)
    {
        var check = new QcowHandler().CheckConfig(config);
        Assert.Equal(valid, check.IsValid);
        if (reason is not null)
            Assert.Contains(reason, check.Reason);
    }
}
