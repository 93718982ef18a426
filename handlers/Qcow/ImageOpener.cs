using System.Buffers.Binary;
using System.Text.RegularExpressions;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging;

namespace HandlerRuntime.Handlers.Qcow;

/// <summary>
/// Opens an image and its backing chain: qcow2, qcow v1 or raw links; relative backing
/// names resolve against the folder of the image that names them; the backing format
/// header extension is honoured (without it the format is probed, as QEMU does).
/// </summary>
internal static partial class ImageOpener
{
    public const int MaxChainLength = 32;

    [GeneratedRegex("^(json:|[A-Za-z][A-Za-z0-9+.-]*://|(nbd|rbd|iscsi|ssh|gluster|sheepdog|vxhs|nfs|http|https|ftp|ftps|null-co|null-aio|blkdebug|blkverify|quorum|throttle|host_device|host_cdrom):)")]
    private static partial Regex ProtocolPrefix();

    /// <summary>Opens the image to serve: it must be qcow2 or qcow v1.</summary>
    public static async ValueTask<IImage> OpenAsync(string path, bool writable, long cacheBytes, ILogger log)
    {
        var full = System.IO.Path.GetFullPath(path);
        var storage = FileStorage.Open(full, writable);
        return await OpenOnStorageAsync(storage, writable, cacheBytes, log, format: null, [full], top: true);
    }

    /// <summary>Opens the image on <paramref name="storage"/> (which it then owns) with its backing chain.</summary>
    internal static async ValueTask<IImage> OpenOnStorageAsync(ImageStorage storage, bool writable, long cacheBytes, ILogger log,
        string? format, List<string> chain, bool top)
    {
        try
        {
            var head = new byte[8];
            await storage.ReadAsync(0, head);
            var isQcow = BinaryPrimitives.ReadUInt32BigEndian(head) == Qcow2Header.Magic;
            var version = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(4));
            format ??= isQcow ? (version == 1 ? "qcow" : "qcow2") : top ? null : "raw";
            switch (format)
            {
                case null:
                    throw new HandlerConfigException($"{storage.Name} is not a qcow2 or qcow image; serve raw files with file//{storage.Name.TrimStart('/')}.");
                case "raw" when !top:
                    return new RawImage(storage);
                case "qcow2" when isQcow && version != 1:
                    return await Qcow2Image.OpenAsync(storage, writable, cacheBytes, log,
                        h => OpenBackingAsync(h.BackingFile, h.BackingFormat, storage.Name, cacheBytes, log, chain));
                case "qcow" when isQcow && version == 1:
                    return await Qcow1Image.OpenAsync(storage,
                        name => OpenBackingAsync(name, null, storage.Name, cacheBytes, log, chain));
                case "qcow2" or "qcow":
                    throw new HandlerConfigException($"{storage.Name} is named as a {format} image but is not one; fix the backing format with qemu-img rebase -u -F.");
                default:
                    throw new HandlerConfigException($"{storage.Name} has format '{format}'; backing images must be qcow2, qcow or raw, convert it with qemu-img convert.");
            }
        }
        catch
        {
            storage.Dispose();
            throw;
        }
    }

    private static async ValueTask<IImage?> OpenBackingAsync(string? name, string? format, string imagePath, long cacheBytes, ILogger log, List<string> chain)
    {
        if (string.IsNullOrEmpty(name))
            return null;
        if (name.StartsWith("file:", StringComparison.Ordinal))
            name = name[5..];
        else if (ProtocolPrefix().IsMatch(name))
            throw new HandlerConfigException($"{imagePath} names its backing file '{name}', which is not a local file; only local backing files are supported.");
        var full = System.IO.Path.GetFullPath(System.IO.Path.IsPathRooted(name) ? name : System.IO.Path.Combine(System.IO.Path.GetDirectoryName(imagePath) ?? "/", name));
        if (chain.Contains(full))
            throw new HandlerConfigException($"{imagePath} has a backing chain that loops back to {full}; fix it with qemu-img rebase -u.");
        if (chain.Count >= MaxChainLength)
            throw new HandlerConfigException($"{chain[0]} has a backing chain longer than {MaxChainLength} images; shorten it with qemu-img commit or convert.");
        if (!File.Exists(full))
            throw new HandlerConfigException($"the backing file {full} of {imagePath} does not exist; restore it or fix the name with qemu-img rebase -u -b.");
        var storage = FileStorage.Open(full, writable: false);
        return await OpenOnStorageAsync(storage, writable: false, Math.Min(cacheBytes, 1 << 20), log, format, [.. chain, full], top: false);
    }
}
