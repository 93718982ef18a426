using HandlerRuntime.Handlers.Shared;
using HandlerRuntime.Sdk;
using Microsoft.Win32.SafeHandles;

namespace HandlerRuntime.Handlers.Ram;

/// <summary>
/// A device living in one mapping: anonymous (MAP_PRIVATE|MAP_NORESERVE, pages appear
/// on first touch and are dropped by UNMAP) or a shared mapping of a file (msync on
/// flush and FUA). Reads and writes are memory copies and complete synchronously.
/// </summary>
internal sealed unsafe class MappedMemoryDevice : IBlockDevice, IProvisioningStatus
{
    private static readonly long PageSize = Environment.SystemPageSize;
    private readonly SafeFileHandle? file;
    private readonly string? path;
    private nint address;
    private long length;
    private DeviceGeometry geometry;
    private readonly PageMap written;

    private MappedMemoryDevice(SafeFileHandle? file, string? path, nint address, long length, int blockSize, bool readOnly)
    {
        this.file = file;
        this.path = path;
        this.address = address;
        this.length = length;
        written = new PageMap(length, (int)PageSize);
        if (file is not null)
            MapExistingData(file, length);
        geometry = DeviceGeometry.FromSize(length, blockSize).WithUnmapGranularity(4096);
        // What the store can do; a read-only LUN is refused writes by the runtime (DATA PROTECT).
        var caps = DeviceCapabilities.Unmap | DeviceCapabilities.UnmapReadsZeroes;
        if (!readOnly)
            caps |= DeviceCapabilities.Write | DeviceCapabilities.WriteZeroes | DeviceCapabilities.Resize;
        if (file is not null)
            caps |= DeviceCapabilities.Flush | DeviceCapabilities.Fua;
        else
            caps |= DeviceCapabilities.NonBlocking; // memory copies only; a mapped file's msync may wait for the disk
        Capabilities = caps;
    }

    public static MappedMemoryDevice Anonymous(long size, int blockSize)
    {
        var addr = Libc.mmap(0, (nuint)size, Libc.ProtRead | Libc.ProtWrite, Libc.MapPrivate | Libc.MapAnonymous | Libc.MapNoReserve, -1, 0);
        if (addr == Libc.MapFailed)
            throw new HandlerConfigException($"Cannot reserve {size} bytes of memory (errno {Libc.Errno}).");
        return new MappedMemoryDevice(null, null, addr, size, blockSize, readOnly: false);
    }

    public static MappedMemoryDevice OfFile(string path, long requestedSize, int blockSize, bool readOnly)
    {
        SafeFileHandle handle;
        try
        {
            handle = System.IO.File.OpenHandle(path, readOnly ? FileMode.Open : FileMode.OpenOrCreate,
                readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HandlerConfigException($"{path} cannot be opened: {e.Message}", e);
        }
        try
        {
            var size = RandomAccess.GetLength(handle);
            if (requestedSize > 0 && size > requestedSize)
                throw new HandlerConfigException($"{path} holds {size} bytes, more than the requested size {requestedSize}; omit the size to use the whole file.");
            if (requestedSize > size)
            {
                if (readOnly)
                    throw new HandlerConfigException($"{path} holds {size} bytes, less than the requested {requestedSize}, and the LUN is read-only.");
                RandomAccess.SetLength(handle, requestedSize);
                size = requestedSize;
            }
            if (size < blockSize)
                throw new HandlerConfigException($"{path} holds {size} bytes, less than one {blockSize}-byte block; give a size.");
            var prot = readOnly ? Libc.ProtRead : Libc.ProtRead | Libc.ProtWrite;
            var addr = Libc.mmap(0, (nuint)size, prot, Libc.MapShared, (int)handle.DangerousGetHandle(), 0);
            if (addr == Libc.MapFailed)
                throw new HandlerConfigException($"{path} cannot be mapped (errno {Libc.Errno}).");
            return new MappedMemoryDevice(handle, path, addr, size, blockSize, readOnly);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public DeviceGeometry Geometry => geometry;

    public DeviceCapabilities Capabilities { get; }

    public ThreadModel ThreadModel => ThreadModel.Parallel;

    private Span<byte> Range(long offset, long count) => new((void*)(address + (nint)offset), checked((int)count));

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        Range(offset, destination.Length).CopyTo(destination.Span);
        return default;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
    {
        source.Span.CopyTo(Range(offset, source.Length));
        written.MarkWritten(offset, source.Length);
        if ((flags & WriteFlags.Fua) != 0)
            Sync(offset, source.Length);
        return default;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        Sync(0, length);
        return default;
    }

    public ValueTask UnmapAsync(long offset, long count, CancellationToken cancellationToken)
    {
        Discard(offset, count);
        written.MarkDeallocated(offset, count);
        return default;
    }

    public ValueTask WriteZeroesAsync(long offset, long count, ZeroFlags flags, CancellationToken cancellationToken)
    {
        // Zeros need no memory either way: the pages are dropped. Without MayUnmap the range
        // stays mapped as far as GET LBA STATUS is concerned.
        Discard(offset, count);
        if ((flags & ZeroFlags.MayUnmap) != 0)
            written.MarkDeallocated(offset, count);
        else
            written.MarkWritten(offset, count);
        if ((flags & ZeroFlags.Fua) != 0)
            Sync(offset, count);
        return default;
    }

    public ValueTask<(bool Mapped, long Length)> GetExtentAsync(long offset, long maxLength, CancellationToken cancellationToken)
        => ValueTask.FromResult(written.Extent(offset, maxLength));

    /// <summary>A file mapped at open already holds data wherever it is not a hole.</summary>
    private void MapExistingData(SafeFileHandle handle, long size)
    {
        var fd = (int)handle.DangerousGetHandle();
        for (long at = 0; at < size;)
        {
            var data = Posix.lseek(fd, at, Posix.SeekData);
            if (data < 0)
            {
                if (Libc.Errno != Errnos.ENXIO)
                    written.SetAll(true); // cannot tell: call everything written
                return;
            }
            var hole = Posix.lseek(fd, data, Posix.SeekHole);
            var end = hole < 0 ? size : Math.Min(hole, size);
            written.MarkWritten(data, end - data);
            at = end;
        }
    }

    /// <summary>Drops whole pages (they read back as zeros) and zeroes the partial pages at the edges.</summary>
    private void Discard(long offset, long count)
    {
        var first = (offset + PageSize - 1) / PageSize * PageSize;
        var end = (offset + count) / PageSize * PageSize;
        if (end <= first)
        {
            Clear(offset, count);
            return;
        }
        Clear(offset, first - offset);
        Clear(end, offset + count - end);
        var ok = file is null
            ? Libc.madvise(address + (nint)first, (nuint)(end - first), Libc.MadvDontNeed) == 0
            : Posix.fallocate((int)file.DangerousGetHandle(), Posix.FallocPunchHole | Posix.FallocKeepSize, first, end - first) == 0;
        if (!ok)
            Clear(first, end - first);
    }

    private void Clear(long offset, long count)
    {
        while (count > 0)
        {
            var n = (int)Math.Min(count, int.MaxValue & ~4095);
            Range(offset, n).Clear();
            offset += n;
            count -= n;
        }
    }

    private void Sync(long offset, long count)
    {
        if (file is null)
            return;
        var start = offset / PageSize * PageSize;
        if (Libc.msync(address + (nint)start, (nuint)(offset + count - start), Libc.MsSync) != 0)
            throw new DeviceIOException(Libc.Errno, $"{path}: msync");
    }

    public ValueTask ResizeAsync(long newSize, CancellationToken cancellationToken)
    {
        if (file is not null)
            RandomAccess.SetLength(file, newSize);
        var moved = Libc.mremap(address, (nuint)length, (nuint)newSize, Libc.MremapMayMove);
        if (moved == Libc.MapFailed)
        {
            if (file is not null)
                RandomAccess.SetLength(file, length);
            throw new ScsiException(Sense.InternalTargetFailure, $"mremap to {newSize} bytes failed with errno {Libc.Errno}");
        }
        address = moved;
        length = newSize;
        written.Resize(newSize);
        geometry = geometry with { BlockCount = newSize / geometry.LogicalBlockSize };
        return default;
    }

    public ValueTask DisposeAsync()
    {
        if (address != 0)
        {
            if (file is not null)
                Libc.msync(address, (nuint)length, Libc.MsSync);
            Libc.munmap(address, (nuint)length);
            address = 0;
        }
        file?.Dispose();
        return default;
    }
}
