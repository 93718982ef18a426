using HandlerRuntime.Handlers.Shared;
using System.Runtime.InteropServices;
using HandlerRuntime.Sdk;
using Microsoft.Win32.SafeHandles;

namespace HandlerRuntime.Handlers.File;

/// <summary>
/// An open file: positional reads and writes, fdatasync for flush and FUA, holes punched
/// for UNMAP, zero ranges for write zeroes, SEEK_DATA/SEEK_HOLE for GET LBA STATUS. Safe
/// for concurrent use.
/// <para>
/// I/O that cannot wait for a disk completes on the caller's thread: everything on tmpfs
/// (a memory copy), reads the page cache already holds (preadv2 with RWF_NOWAIT) and writes
/// the filesystem takes without waiting (pwritev2 with RWF_NOWAIT, where supported). The
/// rest goes to the thread pool as pooled <see cref="FileOperation"/>s (writes through one
/// <see cref="WriteQueue"/> drainer per device), as do fdatasync calls, so the fabric's
/// reader never blocks on a disk.
/// </para>
/// </summary>
internal sealed class FileDevice : IBlockDevice, IProvisioningStatus
{
    private readonly SafeFileHandle handle;
    private readonly string path;
    private readonly bool blockDevice;
    private readonly int fd;
    private readonly bool inMemory;
    private volatile bool readNoWait = true;
    private volatile bool writeNoWait = true;
    private readonly FileOperation.Pool operations = new();
    private readonly WriteQueue writes;
    private DeviceGeometry geometry;

    public FileDevice(SafeFileHandle handle, string path, long size, int blockSize, bool readOnly, bool blockDevice)
    {
        this.handle = handle;
        this.path = path;
        this.blockDevice = blockDevice;
        fd = (int)handle.DangerousGetHandle();
        writes = new WriteQueue(this);
        inMemory = !blockDevice && Libc.IsInMemoryFileSystem(fd);
        geometry = DeviceGeometry.FromSize(size, blockSize).WithUnmapGranularity(4096);
        // What the store can do; a read-only LUN is refused writes by the runtime (DATA PROTECT)
        // while still reporting its provisioning.
        var caps = DeviceCapabilities.Flush | DeviceCapabilities.NonBlocking; // see TryInline and FileOperation
        if (!blockDevice)
            caps |= DeviceCapabilities.Unmap | DeviceCapabilities.UnmapReadsZeroes;
        if (!readOnly)
        {
            caps |= DeviceCapabilities.Write | DeviceCapabilities.WriteZeroes | DeviceCapabilities.Fua; // FUA: write, then fdatasync shared by the burst (WriteQueue)
            if (!blockDevice)
                caps |= DeviceCapabilities.Resize;
        }
        Capabilities = caps;
    }

    public DeviceGeometry Geometry => geometry;

    public DeviceCapabilities Capabilities { get; }

    public ThreadModel ThreadModel => ThreadModel.Parallel;

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var done = TryInline(read: true, offset, destination.Span);
        if (done == destination.Length)
            return default;
        return FileOperation.Start(operations, this, FileOperation.Kind.Read, offset + done, destination[done..]);
    }

    /// <summary>pread until done, on a thread that may wait; past the end of the file reads as zeros (it was truncated under us).</summary>
    internal void ReadBlocking(long offset, Span<byte> destination)
    {
        var done = Transfer(read: true, offset, destination, 0, out var errno);
        if (errno != 0)
            throw new DeviceIOException(errno, $"{path}: read at {offset + done}");
        destination[done..].Clear();
    }

    /// <summary>pwrite until done, on a thread that may wait.</summary>
    internal void WriteBlocking(long offset, Span<byte> source)
    {
        var done = Transfer(read: false, offset, source, 0, out var errno);
        if (done < source.Length)
            throw new DeviceIOException(errno == 0 ? Errnos.EIO : errno, $"{path}: write at {offset + done}");
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
    {
        // A FUA write waits for fdatasync, which belongs on the thread pool.
        var done = (flags & WriteFlags.Fua) == 0 ? TryInline(read: false, offset, MemoryMarshal.AsMemory(source).Span) : 0;
        if (done == source.Length)
            return default;
        var kind = (flags & WriteFlags.Fua) != 0 ? FileOperation.Kind.WriteThenSync : FileOperation.Kind.Write;
        return writes.Enqueue(FileOperation.Prepare(operations, this, kind, offset + done, MemoryMarshal.AsMemory(source[done..])));
    }

    /// <summary>
    /// Moves what can be moved without waiting for a disk, on this thread; returns the bytes
    /// done (0 when nothing could be). The caller finishes the rest on the thread pool, where
    /// short reads at the end of the file and real errors are dealt with.
    /// </summary>
    private int TryInline(bool read, long offset, Span<byte> buffer)
    {
        var noWait = read ? readNoWait : writeNoWait;
        if (!inMemory && !noWait)
            return 0;
        var done = Transfer(read, offset, buffer, inMemory ? 0 : Libc.RwfNoWait, out var errno);
        if (errno is Errnos.EOPNOTSUPP or Errnos.EINVAL && !inMemory)
        {
            // This filesystem does not do RWF_NOWAIT for this direction: stop trying.
            if (read) readNoWait = false; else writeNoWait = false;
        }
        // Short at the end of the file, on EAGAIN (not cached, or the write would wait) or on an
        // error: the pooled path zero-fills or reports it.
        return done;
    }

    /// <summary>
    /// preadv2/pwritev2 until the buffer is done, the end of the file (0 bytes moved) or an
    /// error other than EINTR; returns the bytes moved, with the errno that stopped it (0 when
    /// it did not fail).
    /// </summary>
    private unsafe int Transfer(bool read, long offset, Span<byte> buffer, int flags, out int errno)
    {
        errno = 0;
        var done = 0;
        fixed (byte* start = buffer)
        {
            while (done < buffer.Length)
            {
                var iov = new Libc.IoVec { Base = (nint)(start + done), Length = (nuint)(buffer.Length - done) };
                var n = read ? Libc.preadv2(fd, &iov, 1, offset + done, flags) : Libc.pwritev2(fd, &iov, 1, offset + done, flags);
                if (n > 0)
                {
                    done += (int)n;
                    continue;
                }
                if (n == 0)
                    return done;
                errno = Marshal.GetLastPInvokeError();
                if (errno != Errnos.EINTR)
                    return done;
                errno = 0;
            }
        }
        return done;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken)
        => FileOperation.Start(operations, this, FileOperation.Kind.Sync, 0, default); // fdatasync waits for the disk: not on the caller's thread

    public ValueTask UnmapAsync(long offset, long length, CancellationToken cancellationToken)
        => Fallocate(Posix.FallocPunchHole | Posix.FallocKeepSize, offset, length, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken)
    {
        var mode = (flags & ZeroFlags.MayUnmap) != 0 && !blockDevice
            ? Posix.FallocPunchHole | Posix.FallocKeepSize
            : Posix.FallocZeroRange | Posix.FallocKeepSize;
        var done = Fallocate(mode, offset, length, cancellationToken);
        if ((flags & ZeroFlags.Fua) == 0)
            return done;
        return SyncAfter(done);
    }

    private async ValueTask SyncAfter(ValueTask operation)
    {
        await operation;
        Sync();
    }

    public ValueTask ResizeAsync(long newSize, CancellationToken cancellationToken)
    {
        RandomAccess.SetLength(handle, newSize);
        geometry = geometry with { BlockCount = newSize / geometry.LogicalBlockSize };
        return default;
    }

    public ValueTask<(bool Mapped, long Length)> GetExtentAsync(long offset, long maxLength, CancellationToken cancellationToken)
    {
        var data = Posix.lseek(fd, offset, Posix.SeekData);
        if (data < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            // ENXIO: no data at or after offset, the rest is a hole
            if (errno == Errnos.ENXIO)
                return ValueTask.FromResult((false, maxLength));
            return ValueTask.FromResult((true, maxLength)); // filesystem without SEEK_DATA: everything is mapped
        }
        if (data > offset)
            return ValueTask.FromResult((false, Math.Min(maxLength, data - offset)));
        var hole = Posix.lseek(fd, offset, Posix.SeekHole);
        var mapped = hole < 0 ? maxLength : hole - offset;
        return ValueTask.FromResult((true, Math.Clamp(mapped, 1, maxLength)));
    }

    internal void Sync()
    {
        if (Posix.fdatasync(fd) != 0)
            throw new DeviceIOException(Marshal.GetLastPInvokeError(), $"{path}: fdatasync");
    }

    /// <summary>fallocate; a filesystem that cannot do this mode says "not supported here", and the runtime writes zeros instead.</summary>
    private ValueTask Fallocate(int mode, long offset, long length, CancellationToken ct)
    {
        if (Posix.fallocate(fd, mode, offset, length) == 0)
            return default;
        var errno = Marshal.GetLastPInvokeError();
        if (errno is Errnos.EOPNOTSUPP or Errnos.ENODEV)
            throw new NotSupportedException($"{path}: this filesystem cannot fallocate mode {mode}");
        throw new DeviceIOException(errno, $"{path}: fallocate");
    }

    public ValueTask DisposeAsync()
    {
        handle.Dispose();
        return default;
    }
}
