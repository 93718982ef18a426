using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using HandlerRuntime.Handlers.Shared;
using Microsoft.Win32.SafeHandles;

namespace HandlerRuntime.Handlers.Cow;

/// <summary>
/// An overlay in a file: <c>&lt;path&gt;</c> holds one slot per chunk ever written (slot s at byte
/// s × granularity, in the order chunks were first written), and <c>&lt;path&gt;.map</c> the block
/// map: each chunk's state and slot.
/// <para>
/// Crash-order invariant, what a restart may find:
/// (1) A slot, once given to a chunk, is that chunk's for the life of the overlay: never freed,
///     never given to another, so no map, however old, points a chunk at another chunk's data.
/// (2) The map on disk names only slots whose data was made durable (fdatasync of the data file)
///     before that map was written, and it is replaced all or nothing (written beside, fsynced,
///     renamed over, the directory fsynced), carrying a SHA-256 of itself.
/// (3) Slots at or past the map's slot count are named by no map on disk; a restart reuses them.
/// (4) A new overlay's empty map is made durable before the overlay is used, so a data file
///     without a map is never one of ours (and is refused rather than overwritten).
/// So after a crash the overlay reads as it did at the last completed flush (SYNCHRONIZE CACHE,
/// FUA, close), except that writes since then into chunks that already had a slot may or may
/// not be there, as with any volatile write cache.
/// </para>
/// Map format (little-endian): "HRTCOWM1", u32 granularity, u32 0, u64 device bytes, u32 slot
/// count, u32 0, u64 chunk count, u32 per chunk (bits 0-29 slot + 1 or 0, bits 30-31 state), SHA-256.
/// </summary>
internal sealed class FileOverlay : Overlay
{
    private const int HeaderBytes = 40;
    private const int HashBytes = 32;
    private const uint SlotMask = (1u << 30) - 1;
    private static readonly byte[] Magic = Encoding.ASCII.GetBytes("HRTCOWM1");

    private readonly SafeFileHandle data;
    private readonly string path;
    private readonly string mapPath;
    private readonly uint[] slots; // slot + 1, 0 = none
    private uint slotCount;

    private FileOverlay(SafeFileHandle data, string path, long sizeBytes, int chunkBytes) : base(sizeBytes, chunkBytes)
    {
        this.data = data;
        this.path = path;
        mapPath = path + ".map";
        slots = new uint[Chunks];
    }

    public override bool Persistent => true;

    public override string Where => path;

    public long SlotCount => slotCount;

    /// <summary>
    /// Opens the overlay at <paramref name="path"/> over a device of <paramref name="sizeBytes"/>,
    /// or makes a new one. <paramref name="requested"/> is the granularity the config gave (an
    /// existing overlay keeps its own and refuses another); <paramref name="fallback"/> is used for a new one.
    /// </summary>
    public static FileOverlay Open(string path, long sizeBytes, int? requested, int fallback, bool readOnly)
    {
        var mapPath = path + ".map";
        var dataExists = File.Exists(path);
        var mapExists = File.Exists(mapPath);
        File.Delete(mapPath + ".tmp"); // a map a crash left half written: never renamed, never used
        if (!mapExists)
        {
            if (dataExists && new FileInfo(path).Length > 0)
                throw new InvalidDataException($"cow: {path} exists but has no block map ({mapPath}), so it is not an overlay this handler made; remove it, or give another file=, to start a new overlay.");
            if (readOnly)
                throw new InvalidDataException($"cow: the LUN is read-only and its overlay {path} does not exist yet; create the LUN writable once, or leave out file= for an overlay in memory.");
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var fresh = new FileOverlay(OpenData(path, readOnly: false), path, sizeBytes, requested ?? fallback);
            try
            {
                fresh.WriteMap(); // (4): durable, with the directory entries of both files
            }
            catch
            {
                fresh.data.Dispose();
                throw;
            }
            return fresh;
        }
        if (!dataExists)
            throw new InvalidDataException($"cow: the block map {mapPath} exists but the overlay {path} it describes does not; restore it, or remove {mapPath} to start a new, empty overlay.");

        var map = File.ReadAllBytes(mapPath);
        if (map.Length < HeaderBytes + HashBytes || !map.AsSpan(0, 8).SequenceEqual(Magic)
            || !SHA256.HashData(map.AsSpan(0, map.Length - HashBytes)).AsSpan().SequenceEqual(map.AsSpan(map.Length - HashBytes)))
            throw new InvalidDataException($"cow: the block map {mapPath} is damaged (not written by this handler, or altered); the overlay cannot be trusted. Restore both files from a backup, or remove them to start over.");
        var granularity = (int)BinaryPrimitives.ReadUInt32LittleEndian(map.AsSpan(8));
        var mappedSize = BinaryPrimitives.ReadInt64LittleEndian(map.AsSpan(16));
        var count = BinaryPrimitives.ReadUInt32LittleEndian(map.AsSpan(24));
        var chunks = BinaryPrimitives.ReadInt64LittleEndian(map.AsSpan(32));
        if (requested is { } g && g != granularity)
            throw new InvalidDataException($"cow: the overlay {path} was made with granularity {granularity}, not {g}; leave granularity out (or give {granularity}) to keep it.");
        if (mappedSize != sizeBytes)
            throw new InvalidDataException($"cow: the overlay {path} was made over a base of {mappedSize} bytes, but the base now has {sizeBytes}; open it over the base it was made for.");
        var overlay = new FileOverlay(OpenData(path, readOnly), path, sizeBytes, granularity);
        try
        {
            if (chunks != overlay.Chunks || map.Length != HeaderBytes + 4 * chunks + HashBytes)
                throw new InvalidDataException($"cow: the block map {mapPath} has {chunks} entries where a {sizeBytes}-byte base needs {overlay.Chunks}; the overlay cannot be used.");
            var fileLength = RandomAccess.GetLength(overlay.data);
            for (long c = 0; c < chunks; c++)
            {
                var entry = BinaryPrimitives.ReadUInt32LittleEndian(map.AsSpan(HeaderBytes + (int)(4 * c)));
                var state = (byte)(entry >> 30);
                var slot = entry & SlotMask;
                if (state > Zero || (state == Data && slot == 0) || slot > count
                    || (slot != 0 && (long)(slot - 1) * granularity + overlay.ChunkLength(c) > fileLength && state == Data))
                    throw new InvalidDataException($"cow: the block map {mapPath} names data the overlay {path} does not hold (chunk {c}); the overlay cannot be used.");
                overlay.LoadState(c, state);
                overlay.slots[c] = slot;
            }
            overlay.slotCount = count;
            return overlay;
        }
        catch
        {
            overlay.data.Dispose();
            throw;
        }
    }

    private static SafeFileHandle OpenData(string path, bool readOnly)
    {
        try
        {
            // FileShare.None takes an exclusive lock: two devices never share one overlay.
            return File.OpenHandle(path, readOnly ? FileMode.Open : FileMode.OpenOrCreate, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new InvalidDataException($"cow: the overlay {path} cannot be opened ({e.Message}); is another LUN using it?", e);
        }
    }

    private long SlotOffset(long chunk) => (long)(slots[chunk] - 1) * ChunkBytes;

    public override async ValueTask ReadAsync(long chunk, int at, Memory<byte> destination, CancellationToken ct)
    {
        var offset = SlotOffset(chunk) + at;
        while (!destination.IsEmpty)
        {
            var n = await RandomAccess.ReadAsync(data, destination, offset, ct);
            if (n == 0)
            {
                destination.Span.Clear(); // cannot happen for a slot the map names (checked at open); never return stale memory
                return;
            }
            destination = destination[n..];
            offset += n;
        }
    }

    public override ValueTask WriteAsync(long chunk, int at, ReadOnlyMemory<byte> source, CancellationToken ct)
    {
        if (slots[chunk] == 0)
        {
            slots[chunk] = ++slotCount; // (1): the chunk's for good
            Dirty = true;
        }
        return RandomAccess.WriteAsync(data, source, SlotOffset(chunk) + at, ct);
    }

    /// <summary>(2): the data first, then a map naming it.</summary>
    public override async ValueTask FlushAsync(CancellationToken ct)
    {
        var dirty = Dirty;
        Dirty = false;
        try
        {
            await Task.Run(() =>
            {
                DurableFile.Sync(data, path);
                if (dirty)
                    WriteMap();
            }, ct);
        }
        catch
        {
            Dirty |= dirty;
            throw;
        }
    }

    private void WriteMap()
    {
        var map = new byte[HeaderBytes + 4 * Chunks + HashBytes];
        Magic.CopyTo(map, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(map.AsSpan(8), (uint)ChunkBytes);
        BinaryPrimitives.WriteInt64LittleEndian(map.AsSpan(16), SizeBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(map.AsSpan(24), slotCount);
        BinaryPrimitives.WriteInt64LittleEndian(map.AsSpan(32), Chunks);
        for (long c = 0; c < Chunks; c++)
            BinaryPrimitives.WriteUInt32LittleEndian(map.AsSpan(HeaderBytes + (int)(4 * c)), (uint)StateOf(c) << 30 | slots[c]);
        SHA256.HashData(map.AsSpan(0, map.Length - HashBytes), map.AsSpan(map.Length - HashBytes));
        DurableFile.Replace(mapPath, map, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
    }

    public override ValueTask DisposeAsync()
    {
        data.Dispose();
        return default;
    }
}
