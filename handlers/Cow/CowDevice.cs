using System.Buffers;
using System.Text.Json.Nodes;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Cow;

/// <summary>
/// A copy-on-write device: reads merge the overlay and the read-only base chunk by chunk; a
/// write covering a whole chunk goes to the overlay, a smaller one first copies the rest of its
/// chunk from the base (read-modify-write); unmap and write zeroes of whole chunks only mark
/// them zeroed (they read back as zeros). Changes run one at a time under an async lock, so
/// two partial writes into one chunk cannot lose each other; reads take no lock.
/// Features of the base that would bypass the overlay (a SCSI command handler, zones, a crypto
/// erase, its allocation status) are not passed on; this device reports its own allocation.
/// </summary>
internal sealed class CowDevice : DelegatingBlockDevice, IProvisioningStatus, IHasStatus
{
    private readonly Overlay overlay;
    private readonly bool readOnly;
    private readonly SemaphoreSlim changes = new(1, 1);
    private readonly IProvisioningStatus? baseAllocation;

    public CowDevice(IBlockDevice baseDevice, Overlay overlay, bool readOnly) : base(baseDevice)
    {
        this.overlay = overlay;
        this.readOnly = readOnly;
        baseAllocation = (baseDevice.Capabilities & DeviceCapabilities.Unmap) != 0 ? baseDevice.GetFeature<IProvisioningStatus>() : null;
        Geometry = baseDevice.Geometry.WithUnmapGranularity(overlay.ChunkBytes);
        var caps = DeviceCapabilities.Unmap | DeviceCapabilities.UnmapReadsZeroes | (baseDevice.Capabilities & DeviceCapabilities.Rotational);
        if (!readOnly)
            caps |= DeviceCapabilities.Write | DeviceCapabilities.WriteZeroes | (overlay.Persistent ? DeviceCapabilities.Flush : 0);
        Capabilities = caps;
    }

    public override DeviceGeometry Geometry { get; }

    public override DeviceCapabilities Capabilities { get; }

    private int Chunk => overlay.ChunkBytes;

    public override T? GetFeature<T>() where T : class
        => this as T ?? (typeof(T) == typeof(IScsiCommandHandler) || typeof(T) == typeof(IZonedBlockDevice) || typeof(T) == typeof(ICryptoErase)
            ? null : Inner.GetFeature<T>());

    public override ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var first = offset / Chunk;
        var last = (offset + destination.Length - 1) / Chunk;
        var allBase = true;
        for (var c = first; c <= last && allBase; c++)
            allBase = overlay.StateOf(c) == Overlay.Base;
        return allBase ? Inner.ReadAsync(offset, destination, cancellationToken) : MergedReadAsync(offset, destination, cancellationToken);
    }

    private async ValueTask MergedReadAsync(long offset, Memory<byte> destination, CancellationToken ct)
    {
        var end = offset + destination.Length;
        for (var at = offset; at < end;)
        {
            var c = at / Chunk;
            var state = overlay.StateOf(c);
            var runEnd = Math.Min(end, (c + 1) * Chunk);
            if (state == Overlay.Base)
                while (runEnd < end && overlay.StateOf(runEnd / Chunk) == Overlay.Base)
                    runEnd = Math.Min(end, runEnd + Chunk); // one base read for a run of base chunks
            var part = destination.Slice((int)(at - offset), (int)(runEnd - at));
            switch (state)
            {
                case Overlay.Base:
                    await Inner.ReadAsync(at, part, ct);
                    break;
                case Overlay.Data:
                    await overlay.ReadAsync(c, (int)(at - c * Chunk), part, ct);
                    break;
                default:
                    part.Span.Clear();
                    break;
            }
            at = runEnd;
        }
    }

    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
    {
        await changes.WaitAsync(cancellationToken);
        try
        {
            var end = offset + source.Length;
            for (var at = offset; at < end;)
            {
                var c = at / Chunk;
                var within = (int)(at - c * Chunk);
                var n = (int)Math.Min(end - at, overlay.ChunkLength(c) - within);
                var part = source.Slice((int)(at - offset), n);
                if (n == overlay.ChunkLength(c) || overlay.StateOf(c) == Overlay.Data)
                    await overlay.WriteAsync(c, within, part, cancellationToken);
                else
                    await CopyUpAsync(c, within, n, part, cancellationToken);
                overlay.SetState(c, Overlay.Data);
                at += n;
            }
        }
        finally
        {
            changes.Release();
        }
        if ((flags & WriteFlags.Fua) != 0)
            await FlushAsync(cancellationToken);
    }

    /// <summary>
    /// Read-modify-write of a chunk not yet in the overlay: its base data (or zeros, when it was
    /// zeroed) with <paramref name="n"/> bytes of <paramref name="part"/> (zeros when null) laid
    /// over at <paramref name="within"/>, written whole.
    /// </summary>
    private async ValueTask CopyUpAsync(long c, int within, int n, ReadOnlyMemory<byte>? part, CancellationToken ct)
    {
        var length = overlay.ChunkLength(c);
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var whole = buffer.AsMemory(0, length);
            if (overlay.StateOf(c) == Overlay.Base)
                await Inner.ReadAsync(c * Chunk, whole, ct);
            else
                whole.Span.Clear();
            if (part is { } bytes)
                bytes.Span.CopyTo(whole.Span[within..]);
            else
                whole.Span.Slice(within, n).Clear();
            await overlay.WriteAsync(c, 0, whole, ct);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public override ValueTask UnmapAsync(long offset, long length, CancellationToken cancellationToken)
        => ZeroAsync(offset, length, durable: false, cancellationToken);

    public override ValueTask WriteZeroesAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken)
        => ZeroAsync(offset, length, durable: (flags & ZeroFlags.Fua) != 0, cancellationToken);

    /// <summary>Whole chunks are marked zeroed; the parts of chunks at the ends are zeroed in the overlay.</summary>
    private async ValueTask ZeroAsync(long offset, long length, bool durable, CancellationToken ct)
    {
        await changes.WaitAsync(ct);
        try
        {
            var end = offset + length;
            for (var at = offset; at < end;)
            {
                var c = at / Chunk;
                var within = (int)(at - c * Chunk);
                var n = (int)Math.Min(end - at, overlay.ChunkLength(c) - within);
                var state = overlay.StateOf(c);
                if (n == overlay.ChunkLength(c))
                    overlay.SetState(c, Overlay.Zero);
                else if (state == Overlay.Data)
                    await WriteZerosAsync(c, within, n, ct);
                else if (state == Overlay.Base)
                {
                    await CopyUpAsync(c, within, n, null, ct);
                    overlay.SetState(c, Overlay.Data);
                }
                at += n;
            }
        }
        finally
        {
            changes.Release();
        }
        if (durable)
            await FlushAsync(ct);
    }

    private async ValueTask WriteZerosAsync(long c, int within, int n, CancellationToken ct)
    {
        var zeros = ArrayPool<byte>.Shared.Rent(n);
        try
        {
            zeros.AsSpan(0, n).Clear();
            await overlay.WriteAsync(c, within, zeros.AsMemory(0, n), ct);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(zeros);
        }
    }

    /// <summary>Makes the overlay durable: its data, then its map (a file overlay; nothing to do in memory).</summary>
    public override async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        if (!overlay.Persistent || readOnly)
            return;
        await changes.WaitAsync(cancellationToken);
        try
        {
            await overlay.FlushAsync(cancellationToken);
        }
        finally
        {
            changes.Release();
        }
    }

    /// <summary>GET LBA STATUS: overlay chunks are mapped, zeroed ones deallocated, the base's as the base says.</summary>
    public async ValueTask<(bool Mapped, long Length)> GetExtentAsync(long offset, long maxLength, CancellationToken cancellationToken)
    {
        var c = offset / Chunk;
        var state = overlay.StateOf(c);
        var end = Math.Min(offset + maxLength, Geometry.SizeBytes);
        var runEnd = Math.Min(end, (c + 1) * Chunk);
        while (runEnd < end && overlay.StateOf(runEnd / Chunk) == state)
            runEnd = Math.Min(end, runEnd + Chunk);
        var length = runEnd - offset;
        return state switch
        {
            Overlay.Data => (true, length),
            Overlay.Zero => (false, length),
            _ => baseAllocation is null ? (true, length) : await baseAllocation.GetExtentAsync(offset, length, cancellationToken),
        };
    }

    public JsonObject GetStatus() => new()
    {
        ["filter"] = "cow",
        ["overlay"] = overlay.Where,
        ["granularity"] = overlay.ChunkBytes,
        ["chunks"] = overlay.Chunks,
        ["inOverlay"] = overlay.ChunksInOverlay,
        ["zeroed"] = overlay.ChunksZeroed,
        ["base"] = Inner.GetFeature<IHasStatus>()?.GetStatus(),
    };

    public override async ValueTask DisposeAsync()
    {
        try
        {
            await FlushAsync(CancellationToken.None); // a file overlay's last writes and map
        }
        finally
        {
            try
            {
                await overlay.DisposeAsync();
            }
            finally
            {
                changes.Dispose();
                await base.DisposeAsync();
            }
        }
    }
}
