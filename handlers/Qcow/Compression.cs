using System.IO.Compression;
using System.Runtime.InteropServices;

namespace HandlerRuntime.Handlers.Qcow;

/// <summary>
/// Decompression of compressed clusters. Deflate is raw deflate (no zlib header) for
/// qcow2 and qcow v1; zstd is one or more zstd frames (libzstd through P/Invoke).
/// Decompression stops once exactly one cluster has been produced: the compressed
/// data's last sector may hold the start of another cluster's data.
/// </summary>
internal static partial class Compression
{
    public static void Inflate(byte[] compressed, int length, Span<byte> cluster)
    {
        using var stream = new DeflateStream(new MemoryStream(compressed, 0, length, writable: false), CompressionMode.Decompress);
        int produced;
        try
        {
            produced = stream.ReadAtLeast(cluster, cluster.Length, throwOnEndOfStream: false);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException("a deflate-compressed cluster is damaged: " + e.Message, e);
        }
        if (produced != cluster.Length)
            throw new InvalidDataException($"a deflate-compressed cluster decompressed to {produced} bytes instead of {cluster.Length}.");
    }

    public static unsafe void ZstdDecompress(byte[] compressed, int length, Span<byte> cluster)
    {
        var dctx = ZSTD_createDCtx();
        if (dctx == 0)
            throw new OutOfMemoryException("libzstd could not create a decompression context.");
        try
        {
            fixed (byte* src = compressed)
            fixed (byte* dst = cluster)
            {
                var input = new ZstdInBuffer { Src = src, Size = (nuint)length, Pos = 0 };
                var output = new ZstdOutBuffer { Dst = dst, Size = (nuint)cluster.Length, Pos = 0 };
                while (output.Pos < output.Size)
                {
                    var lastIn = input.Pos;
                    var lastOut = output.Pos;
                    var r = ZSTD_decompressStream(dctx, &output, &input);
                    if (ZSTD_isError(r) != 0)
                        throw new InvalidDataException("a zstd-compressed cluster is damaged: " + Marshal.PtrToStringUTF8(ZSTD_getErrorName(r)));
                    if (input.Pos <= lastIn && output.Pos <= lastOut)
                        throw new InvalidDataException($"a zstd-compressed cluster ends after {output.Pos} of {cluster.Length} bytes.");
                }
            }
        }
        finally
        {
            ZSTD_freeDCtx(dctx);
        }
    }

    private const string Zstd = "libzstd.so.1";

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct ZstdInBuffer
    {
        public byte* Src;
        public nuint Size;
        public nuint Pos;
    }

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct ZstdOutBuffer
    {
        public byte* Dst;
        public nuint Size;
        public nuint Pos;
    }

    [LibraryImport(Zstd)]
    private static partial nint ZSTD_createDCtx();

    [LibraryImport(Zstd)]
    private static partial nuint ZSTD_freeDCtx(nint dctx);

    [LibraryImport(Zstd)]
    private static unsafe partial nuint ZSTD_decompressStream(nint dctx, ZstdOutBuffer* output, ZstdInBuffer* input);

    [LibraryImport(Zstd)]
    private static partial uint ZSTD_isError(nuint code);

    [LibraryImport(Zstd)]
    private static partial nint ZSTD_getErrorName(nuint code);
}
