namespace HandlerRuntime.Qcow.Tests;

/// <summary>
/// One image of the matrix: how QEMU's tools build it, and what the handler may do with it.
/// </summary>
/// <param name="Name">What the image is, as test output shows it.</param>
/// <param name="Build">Builds the image (and its backing chain) in a folder; returns the image's path.</param>
/// <param name="Format">qcow2, or qcow for version 1 (no zero clusters, no refcounts to check).</param>
/// <param name="UnmapReadsZeroes">False for v2 images with a backing file (UNMAP may show the backing data).</param>
public sealed record ImageCase(string Name, Func<string, Task<string>> Build, string Format = "qcow2", bool UnmapReadsZeroes = true)
{
    public override string ToString() => Name;
}

/// <summary>The enumerated matrix of images, each built by qemu-img create/convert/snapshot and qemu-io.</summary>
public static class ImageMatrix
{
    public const long Size = 4 << 20;

    /// <summary>Writes, zero writes (with and without unmap) and discards by QEMU, spread over the disk and across cluster edges.</summary>
    private static readonly string[] QemuWrites =
    [
        "write -P 0x5a 0 192k",
        "write -P 0xa5 300k 4k",
        "write -P 0x3c 1600k 1536",
        "write -z 640k 128k",
        "write -z -u 1m 64k",
        "discard 1536k 64k",
        "write -P 0x77 3m 512",
        "write -P 0x19 4095k 1k",
    ];

    public static IEnumerable<ImageCase> All()
    {
        // compat (version 2 and 3) and cluster sizes 512 B - 2 MiB
        foreach (var cs in new[] { "512", "4k", "64k", "2M" })
            yield return new($"v3 cluster {cs}", d => Qcow2Async(d, $"compat=1.1,cluster_size={cs}"));
        foreach (var cs in new[] { "512", "64k" })
            yield return new($"v2 cluster {cs}", d => Qcow2Async(d, $"compat=0.10,cluster_size={cs}"));
        // refcount widths
        foreach (var bits in new[] { 1, 2, 4, 8, 32, 64 })
            yield return new($"v3 refcount_bits {bits}", d => Qcow2Async(d, $"compat=1.1,cluster_size=4k,refcount_bits={bits}"));
        yield return new("v3 lazy_refcounts", d => Qcow2Async(d, "compat=1.1,lazy_refcounts=on"));
        // extended L2 (subclusters)
        foreach (var cs in new[] { "16k", "64k", "2M" })
            yield return new($"v3 extended_l2 cluster {cs}", d => Qcow2Async(d, $"compat=1.1,extended_l2=on,cluster_size={cs}"));
        // preallocation modes
        foreach (var mode in new[] { "metadata", "falloc", "full" })
            yield return new($"v3 preallocation {mode}", d => PreallocatedAsync(d, $"compat=1.1,preallocation={mode}"));
        yield return new("v2 preallocation metadata", d => PreallocatedAsync(d, "compat=0.10,preallocation=metadata"));
        yield return new("v3 extended_l2 preallocation metadata", d => PreallocatedAsync(d, "compat=1.1,extended_l2=on,preallocation=metadata"));
        // compressed images (qemu-img convert -c)
        yield return new("v3 compressed zlib", d => CompressedAsync(d, "compat=1.1,compression_type=zlib"));
        yield return new("v3 compressed zstd", d => CompressedAsync(d, "compat=1.1,compression_type=zstd"));
        yield return new("v2 compressed", d => CompressedAsync(d, "compat=0.10"));
        yield return new("v3 compressed zstd cluster 4k", d => CompressedAsync(d, "compat=1.1,compression_type=zstd,cluster_size=4k"));
        yield return new("v3 compressed zlib cluster 2M", d => CompressedAsync(d, "compat=1.1,cluster_size=2M"));
        yield return new("v3 compressed zstd extended_l2", d => CompressedAsync(d, "compat=1.1,compression_type=zstd,extended_l2=on"));
        // internal snapshots
        yield return new("v3 internal snapshots", d => SnapshotsAsync(d, "compat=1.1,cluster_size=4k"));
        yield return new("v2 internal snapshots", d => SnapshotsAsync(d, "compat=0.10"));
        yield return new("v3 extended_l2 internal snapshots", d => SnapshotsAsync(d, "compat=1.1,extended_l2=on,cluster_size=16k"));
        // backing chains, depth 1 to 3
        yield return new("backing depth 1: v3 on raw", d => ChainAsync(d, ["raw"], "compat=1.1,cluster_size=4k"));
        yield return new("backing depth 1: v2 on raw", d => ChainAsync(d, ["raw"], "compat=0.10"), UnmapReadsZeroes: false);
        yield return new("backing depth 2: v3 on v3 on qcow2", d => ChainAsync(d, ["qcow2", "qcow2"], "compat=1.1"));
        yield return new("backing depth 2: extended_l2 on extended_l2 16k", d => ChainAsync(d, ["qcow2:compat=1.1,extended_l2=on,cluster_size=16k", "qcow2:compat=1.1,extended_l2=on,cluster_size=64k"], "compat=1.1,extended_l2=on,cluster_size=32k"));
        yield return new("backing depth 3: v3 on v2 on qcow v1 on raw", d => ChainAsync(d, ["raw", "qcow", "qcow2:compat=0.10,cluster_size=512"], "compat=1.1,cluster_size=16k"));
        yield return new("backing depth 1: smaller backing file", d => ChainAsync(d, ["qcow2:compat=1.1,size=1M"], "compat=1.1,cluster_size=4k"));
        yield return new("backing depth 1: relative name in another folder", SiblingFolderBackingAsync);
        yield return new("backing depth 1: no backing format extension (probed)", ProbedBackingAsync);
        yield return new("backing depth 1: compressed backing", d => ChainAsync(d, ["compressed"], "compat=1.1"));
        // legacy qcow v1
        yield return new("qcow v1", d => Qcow1Async(d, compressed: false), Format: "qcow");
        yield return new("qcow v1 compressed clusters", d => Qcow1Async(d, compressed: true), Format: "qcow");
        yield return new("qcow v1 over a raw backing file", Qcow1BackedAsync, Format: "qcow");
    }

    public static IEnumerable<object[]> Cases() => All().Select(c => new object[] { c });


    /// <summary>Random data in scattered regions, zeros between them: a sparse disk with content worth comparing.</summary>
    public static byte[] BaseContent(long size, int seed)
    {
        var data = new byte[size];
        var random = new Random(seed);
        for (var i = 0; i < 12; i++)
        {
            var at = random.Next((int)(size / 512)) * 512;
            var n = Math.Min((int)size - at, 512 * (1 + random.Next(200)));
            if (i % 3 == 0)
                data.AsSpan(at, n).Fill((byte)(i * 17 + 1)); // compressible
            else
                random.NextBytes(data.AsSpan(at, n));
        }
        return data;
    }

    private static async Task<string> RawAsync(string dir, string name, long size, int seed)
    {
        var path = Path.Combine(dir, name);
        await File.WriteAllBytesAsync(path, BaseContent(size, seed));
        return path;
    }

    private static async Task<string> Qcow2Async(string dir, string options, string name = "image.qcow2", long size = Size, int seed = 7)
    {
        var raw = await RawAsync(dir, name + ".base.raw", size, seed);
        var image = Path.Combine(dir, name);
        await Qemu.ImgOkAsync("convert", "-f", "raw", "-O", "qcow2", "-o", options, raw, image);
        File.Delete(raw);
        await Qemu.IoAsync(image, "qcow2", QemuWrites);
        return image;
    }

    private static async Task<string> PreallocatedAsync(string dir, string options)
    {
        var image = Path.Combine(dir, "image.qcow2");
        await Qemu.ImgOkAsync("create", "-q", "-f", "qcow2", "-o", options, image, Size.ToString());
        await Qemu.IoAsync(image, "qcow2", QemuWrites);
        return image;
    }

    private static async Task<string> CompressedAsync(string dir, string options)
    {
        var raw = await RawAsync(dir, "base.raw", Size, 11);
        var image = Path.Combine(dir, "image.qcow2");
        await Qemu.ImgOkAsync("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", options, raw, image);
        File.Delete(raw);
        // Some clusters then stop being compressed (partial rewrites), some stay.
        await Qemu.IoAsync(image, "qcow2", "write -P 0x42 8k 4k", "write -z 2m 64k");
        return image;
    }

    private static async Task<string> SnapshotsAsync(string dir, string options)
    {
        var image = await Qcow2Async(dir, options);
        await Qemu.ImgOkAsync("snapshot", "-c", "first", image);
        await Qemu.IoAsync(image, "qcow2", "write -P 0xe1 0 64k", "write -P 0xe2 2m 8k", "discard 300k 4k");
        await Qemu.ImgOkAsync("snapshot", "-c", "second", image);
        // Nothing written after the last snapshot: every L2 table and data cluster is still shared with it.
        return image;
    }

    /// <summary>
    /// A backing chain: <paramref name="links"/> from the bottom up, each "raw", "qcow",
    /// "compressed" or "qcow2[:options]" (options may hold size=), then the top image.
    /// Every link is written to by QEMU, so each level shows through somewhere.
    /// </summary>
    private static async Task<string> ChainAsync(string dir, string[] links, string topOptions)
    {
        string? below = null, belowFormat = null;
        for (var i = 0; i < links.Length; i++)
        {
            var (kind, options) = links[i].Split(':', 2) is [var k, var rest] ? (k, rest) : (links[i], "compat=1.1");
            var size = Size;
            var opts = new List<string>();
            foreach (var o in options.Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                if (o.StartsWith("size=", StringComparison.Ordinal))
                    size = o == "size=1M" ? 1 << 20 : throw new ArgumentException(o);
                else
                    opts.Add(o);
            }
            var name = $"link{i}.{(kind == "raw" ? "raw" : kind == "qcow" ? "qcow" : "qcow2")}";
            var path = Path.Combine(dir, name);
            switch (kind)
            {
                case "raw":
                    await RawAsync(dir, name, size, 100 + i);
                    break;
                case "compressed":
                    var raw = await RawAsync(dir, name + ".raw", size, 100 + i);
                    await Qemu.ImgOkAsync("convert", "-c", "-f", "raw", "-O", "qcow2", raw, path);
                    File.Delete(raw);
                    break;
                default:
                    var create = new List<string> { "create", "-q", "-f", kind == "qcow" ? "qcow" : "qcow2" };
                    if (kind == "qcow2" && opts.Count > 0)
                        create.AddRange(["-o", string.Join(',', opts)]);
                    if (below is not null)
                        create.AddRange(["-b", below, "-F", belowFormat!]);
                    create.AddRange([path, size.ToString()]);
                    await Qemu.ImgOkAsync([.. create]);
                    var p = (byte)(0x30 + i);
                    await Qemu.IoAsync(path, kind == "qcow" ? "qcow" : "qcow2",
                        $"write -P 0x{p:x2} {64 * i + 4}k 6k", $"write -P 0x{p + 8:x2} {(size >> 10) / 2 + i * 8}k 1k", $"write -P 0x{p + 4:x2} 1k 512");
                    break;
            }
            below = name; // relative: resolved against the folder of the image that names it
            belowFormat = kind == "compressed" ? "qcow2" : kind;
        }
        var top = Path.Combine(dir, "image.qcow2");
        await Qemu.ImgOkAsync("create", "-q", "-f", "qcow2", "-o", topOptions, "-b", below!, "-F", belowFormat!, top, Size.ToString());
        await Qemu.IoAsync(top, "qcow2", "write -P 0xd1 12k 1k", "write -P 0xd2 2048k 64k", "write -z 70k 2k", "discard 3000k 8k");
        return top;
    }

    private static async Task<string> SiblingFolderBackingAsync(string dir)
    {
        Directory.CreateDirectory(Path.Combine(dir, "base"));
        Directory.CreateDirectory(Path.Combine(dir, "top"));
        var raw = await RawAsync(Path.Combine(dir, "base"), "base.raw", Size, 5);
        await Qemu.ImgOkAsync("convert", "-f", "raw", "-O", "qcow2", raw, Path.Combine(dir, "base", "base.qcow2"));
        var top = Path.Combine(dir, "top", "image.qcow2");
        await Qemu.ImgOkAsync("create", "-q", "-f", "qcow2", "-b", "../base/base.qcow2", "-F", "qcow2", top, Size.ToString());
        await Qemu.IoAsync(top, "qcow2", "write -P 0xd3 100k 3k");
        return top;
    }

    /// <summary>A backing file named without the backing format extension: its type is renamed to an unknown one, so the format is probed.</summary>
    private static async Task<string> ProbedBackingAsync(string dir)
    {
        var top = await ChainAsync(dir, ["qcow2"], "compat=1.1");
        await HeaderEdit.RenameExtensionAsync(top, 0xE2792ACA, 0x7E570001);
        return top;
    }

    private static async Task<string> Qcow1BackedAsync(string dir)
    {
        await RawAsync(dir, "base.raw", Size, 4);
        var image = Path.Combine(dir, "image.qcow");
        await Qemu.ImgOkAsync("create", "-q", "-f", "qcow", "-b", "base.raw", "-F", "raw", image, Size.ToString());
        await Qemu.IoAsync(image, "qcow", "write -P 0x66 6k 2k", "write -P 0x67 128k 4k");
        return image;
    }

    private static async Task<string> Qcow1Async(string dir, bool compressed)
    {
        var image = Path.Combine(dir, "image.qcow");
        if (compressed)
        {
            await Qemu.ImgOkAsync("create", "-q", "-f", "qcow", image, Size.ToString());
            await Qemu.IoAsync(image, "qcow", "write -c -P 0x61 0 4k", "write -c -P 0x62 64k 4k", "write -P 0x63 128k 8k", "write -c -P 0x64 1m 4k");
        }
        else
        {
            var raw = await RawAsync(dir, "base.raw", Size, 3);
            await Qemu.ImgOkAsync("convert", "-f", "raw", "-O", "qcow", raw, image);
            await Qemu.IoAsync(image, "qcow", "write -P 0x65 5k 3k");
        }
        return image;
    }
}
