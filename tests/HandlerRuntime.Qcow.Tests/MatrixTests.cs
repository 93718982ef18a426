using HandlerRuntime.Sdk;

namespace HandlerRuntime.Qcow.Tests;

/// <summary>The image matrix against QEMU: reads equal qemu-img convert -O raw; after random writes, qemu-img check and compare agree.</summary>
public sealed class MatrixTests
{
    [Theory]
    [MemberData(nameof(ImageMatrix.Cases), MemberType = typeof(ImageMatrix))]
    public async Task Every_byte_read_through_the_handler_equals_qemu_img_convert(ImageCase image)
    {
        using var dir = new TempDir("qcow-read");
        var path = await image.Build(dir.Path);
        var expected = await Qemu.ToRawAsync(path);
        await using var device = await Handler.OpenAsync(path, readOnly: true);
        Assert.Equal(expected.Length, device.Geometry.SizeBytes);
        Handler.AssertSameBytes(expected, await Handler.ReadAllAsync(device), image.Name);
    }

    [Theory]
    [MemberData(nameof(ImageMatrix.Cases), MemberType = typeof(ImageMatrix))]
    public async Task Random_writes_unmaps_and_flushes_leave_an_image_qemu_checks_clean_and_compares_equal(ImageCase image)
    {
        using var dir = new TempDir("qcow-write");
        var path = await image.Build(dir.Path);
        var model = await Qemu.ToRawAsync(path);
        var snapshots = image.Name.Contains("snapshots") ? await SnapshotContentsAsync(path) : null;
        var seed = image.Name.Aggregate(17, (h, c) => h * 31 + c);
        var random = new Random(seed);

        // A small cache (8 tables) so that eviction and its write-back ordering run all the time.
        await using (var device = await Handler.OpenAsync(path, options: "cache=64K"))
        {
            Assert.True(device.Capabilities.HasFlag(DeviceCapabilities.Write));
            var zeroClusters = image.Format == "qcow2"; // qcow v1 has none: UNMAP and write zeroes are not offered
            Assert.Equal(zeroClusters, device.Capabilities.HasFlag(DeviceCapabilities.Unmap | DeviceCapabilities.WriteZeroes));
            Assert.Equal(zeroClusters && image.UnmapReadsZeroes, device.Capabilities.HasFlag(DeviceCapabilities.UnmapReadsZeroes));
            for (var i = 0; i < 60; i++)
            {
                var (offset, length) = RandomRange(random, model.Length);
                switch (random.Next(10))
                {
                    case < 5:
                        var data = new byte[length];
                        random.NextBytes(data);
                        await device.WriteAsync(offset, data, random.Next(4) == 0 ? WriteFlags.Fua : WriteFlags.None, CancellationToken.None);
                        data.CopyTo(model, offset);
                        break;
                    case 5 or 6 when zeroClusters && image.UnmapReadsZeroes:
                        await device.UnmapAsync(offset, length, CancellationToken.None);
                        Array.Clear(model, (int)offset, length);
                        break;
                    case < 8:
                        if (zeroClusters)
                            await device.WriteZeroesAsync(offset, length, random.Next(2) == 0 ? ZeroFlags.MayUnmap : ZeroFlags.None, CancellationToken.None);
                        else
                            await device.WriteAsync(offset, new byte[length], WriteFlags.None, CancellationToken.None); // what the runtime does without WriteZeroes
                        Array.Clear(model, (int)offset, length);
                        break;
                    case 8:
                        await device.FlushAsync(CancellationToken.None);
                        break;
                    default:
                        var check = new byte[length];
                        await device.ReadAsync(offset, check, CancellationToken.None);
                        Handler.AssertSameBytes(model.AsSpan((int)offset, length).ToArray(), check, $"{image.Name}, read back after step {i}");
                        break;
                }
            }
            Handler.AssertSameBytes(model, await Handler.ReadAllAsync(device, seed), $"{image.Name}, read through the handler after the writes");
            Assert.Equal(0, ((Handlers.Qcow.QcowDevice)device).Image is Handlers.Qcow.Qcow2Image q ? q.InconsistentFrees : 0);
        }
        if (image.Format == "qcow2")
            await Qemu.AssertCheckCleanAsync(path); // qemu-img check has no checks for qcow v1
        await Qemu.AssertSameAsRawAsync(path, model, image.Format);
        if (snapshots is not null)
            Assert.Equal(snapshots, await SnapshotContentsAsync(path)); // internal snapshots untouched
    }

    /// <summary>A block-aligned range: mostly small, sometimes several clusters, often across cluster edges.</summary>
    internal static (long Offset, int Length) RandomRange(Random random, long size)
    {
        var sectors = random.Next(4) switch
        {
            0 => 1,
            1 => 1 + random.Next(16),
            2 => 1 + random.Next(300),
            _ => 1 + random.Next(2048),
        };
        var length = (int)Math.Min(size, sectors * 512L);
        var offset = random.NextInt64(0, (size - length) / 512 + 1) * 512;
        return (offset, length);
    }

    private static async Task<List<byte[]>> SnapshotContentsAsync(string image)
    {
        var list = new List<byte[]>();
        foreach (var name in new[] { "first", "second" })
        {
            var raw = image + "." + name + ".raw";
            await Qemu.ImgOkAsync("convert", "-f", "qcow2", "-O", "raw", "-l", $"snapshot.name={name}", image, raw);
            list.Add(await File.ReadAllBytesAsync(raw));
            File.Delete(raw);
        }
        return list;
    }
}
