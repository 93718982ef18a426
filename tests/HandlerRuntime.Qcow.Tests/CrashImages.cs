namespace HandlerRuntime.Qcow.Tests;

/// <summary>The images crash trials run on: one per kind of metadata work the writes cause.</summary>
public sealed record CrashImage(string Name, Func<string, Task<string>> Build, bool Unmap = true)
{
    public override string ToString() => Name;

    public static IReadOnlyList<CrashImage> All { get; } =
    [
        new("v3 cluster 64k", d => WithContentAsync(d, "compat=1.1")),
        new("v3 cluster 512 refcount_bits 64 (refcount table growth)", d => WithContentAsync(d, "compat=1.1,cluster_size=512,refcount_bits=64")),
        new("v3 cluster 4k refcount_bits 1", d => WithContentAsync(d, "compat=1.1,cluster_size=4k,refcount_bits=1")),
        new("extended_l2 16k over a raw backing file", BackedExtendedAsync),
        new("v3 cluster 4k with an internal snapshot", SnapshotAsync),
        new("v2 over a raw backing file", BackedV2Async, Unmap: false),
        new("v3 compressed zstd", CompressedAsync),
    ];

    private static async Task<string> WithContentAsync(string dir, string options)
    {
        var raw = Path.Combine(dir, "content.raw");
        await File.WriteAllBytesAsync(raw, ImageMatrix.BaseContent(ImageMatrix.Size, 21));
        var image = Path.Combine(dir, "image.qcow2");
        await Qemu.ImgOkAsync("convert", "-f", "raw", "-O", "qcow2", "-o", options, raw, image);
        File.Delete(raw);
        return image;
    }

    private static async Task<string> BackedExtendedAsync(string dir)
    {
        await File.WriteAllBytesAsync(Path.Combine(dir, "base.raw"), ImageMatrix.BaseContent(ImageMatrix.Size, 22));
        var image = Path.Combine(dir, "image.qcow2");
        await Qemu.ImgOkAsync("create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=16k", "-b", "base.raw", "-F", "raw", image, ImageMatrix.Size.ToString());
        return image;
    }

    private static async Task<string> BackedV2Async(string dir)
    {
        await File.WriteAllBytesAsync(Path.Combine(dir, "base.raw"), ImageMatrix.BaseContent(ImageMatrix.Size, 23));
        var image = Path.Combine(dir, "image.qcow2");
        await Qemu.ImgOkAsync("create", "-q", "-f", "qcow2", "-o", "compat=0.10,cluster_size=4k", "-b", "base.raw", "-F", "raw", image, ImageMatrix.Size.ToString());
        return image;
    }

    private static async Task<string> SnapshotAsync(string dir)
    {
        var image = await WithContentAsync(dir, "compat=1.1,cluster_size=4k");
        await Qemu.ImgOkAsync("snapshot", "-c", "before", image);
        return image;
    }

    private static async Task<string> CompressedAsync(string dir)
    {
        var raw = Path.Combine(dir, "content.raw");
        await File.WriteAllBytesAsync(raw, ImageMatrix.BaseContent(ImageMatrix.Size, 24));
        var image = Path.Combine(dir, "image.qcow2");
        await Qemu.ImgOkAsync("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "compression_type=zstd", raw, image);
        File.Delete(raw);
        return image;
    }
}
