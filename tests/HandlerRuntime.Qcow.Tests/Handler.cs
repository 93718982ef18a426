using HandlerRuntime.Handlers.Qcow;
using HandlerRuntime.Sdk;
using Xunit.Sdk;

namespace HandlerRuntime.Qcow.Tests;

/// <summary>Opens images through the handler's public entry point, as the runtime does.</summary>
internal static class Handler
{
    public static async Task<IBlockDevice> OpenAsync(string image, bool readOnly = false, string? options = null, long size = 0, int blockSize = 0)
        => await new QcowHandler().OpenAsync(OpenContexts.For(image + (options is null ? "" : "?" + options), size, blockSize, readOnly), CancellationToken.None);

    /// <summary>Every byte of the device, read in chunks of varying size so that reads straddle clusters.</summary>
    public static async Task<byte[]> ReadAllAsync(IBlockDevice device, int seed = 1)
    {
        var size = device.Geometry.SizeBytes;
        var all = new byte[size];
        var random = new Random(seed);
        for (long at = 0; at < size;)
        {
            var n = (int)Math.Min(size - at, 512L * (1 + random.Next(300)));
            await device.ReadAsync(at, all.AsMemory((int)at, n), CancellationToken.None);
            at += n;
        }
        return all;
    }

    public static void AssertSameBytes(byte[] expected, byte[] actual, string what)
    {
        if (expected.Length != actual.Length)
            throw new XunitException($"{what}: {actual.Length} bytes instead of {expected.Length}");
        var diff = expected.AsSpan().CommonPrefixLength(actual);
        if (diff < expected.Length)
            throw new XunitException($"{what}: first difference at byte {diff} (sector {diff / 512}): expected 0x{expected[diff]:x2}, got 0x{actual[diff]:x2}");
    }
}
