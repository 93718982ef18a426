using System.Runtime.InteropServices;
using HandlerRuntime.Sdk;
using Microsoft.Win32.SafeHandles;

namespace HandlerRuntime.Handlers.File;

/// <summary>
/// An open file: pread/pwrite through <see cref="RandomAccess"/>, fdatasync for flush and
/// FUA, holes punched for UNMAP, zero ranges for write zeroes, SEEK_DATA/SEEK_HOLE for
/// GET LBA STATUS. Safe for concurrent use.
/// </summary>
internal sealed class FileDevice : IBlockDevice, IProvisioningStatus
{
    private readonly SafeFileHandle handle;
    private readonly string path;
    private readonly bool blockDevice;
    private readonly int fd;
    private DeviceGeometry geometry;

    public FileDevice(SafeFileHandle handle, string path, long size, int blockSize, bool readOnly, bool blockDevice)
    {
        this.handle = handle;
        this.path = path;
        this.blockDevice = blockDevice;
        fd = (int)handle.DangerousGetHandle();
        geometry = DeviceGeometry.FromSize(size, blockSize).WithUnmapGranularity(4096);
        // What the store can do; a read-only LUN is refused writes by the runtime (DATA PROTECT)
        // while still reporting its provisioning.
        var caps = DeviceCapabilities.Flush;
        if (!blockDevice)
            caps |= DeviceCapabilities.Unmap | DeviceCapabilities.UnmapReadsZeroes;
        if (!readOnly)
        {
            caps |= DeviceCapabilities.Write | DeviceCapabilities.WriteZeroes;
            if (!blockDevice)
                caps |= DeviceCapabilities.Resize;
        }
        Capabilities = caps;
    }

    public DeviceGeometry Geometry => geometry;

    public DeviceCapabilities Capabilities { get; }

    public ThreadModel ThreadModel => ThreadModel.Parallel;

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        while (!destination.IsEmpty)
        {
            var n = await RandomAccess.ReadAsync(handle, destination, offset, cancellationToken);
            if (n == 0)
            {
                destination.Span.Clear(); // the file was truncated under us: past its end reads as zeros
                return;
            }
            destination = destination[n..];
            offset += n;
        }
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
    {
        await RandomAccess.WriteAsync(handle, source, offset, cancellationToken);
        if ((flags & WriteFlags.Fua) != 0)
            Sync();
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        Sync();
        return default;
    }

    public ValueTask UnmapAsync(long offset, long length, CancellationToken cancellationToken)
        => Fallocate(Libc.FallocPunchHole | Libc.FallocKeepSize, offset, length, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken)
    {
        var mode = (flags & ZeroFlags.MayUnmap) != 0 && !blockDevice
            ? Libc.FallocPunchHole | Libc.FallocKeepSize
            : Libc.FallocZeroRange | Libc.FallocKeepSize;
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
        var data = Libc.lseek(fd, offset, Libc.SeekData);
        if (data < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            // ENXIO: no data at or after offset, the rest is a hole
            if (errno == Libc.ENXIO)
                return ValueTask.FromResult((false, maxLength));
            return ValueTask.FromResult((true, maxLength)); // filesystem without SEEK_DATA: everything is mapped
        }
        if (data > offset)
            return ValueTask.FromResult((false, Math.Min(maxLength, data - offset)));
        var hole = Libc.lseek(fd, offset, Libc.SeekHole);
        var mapped = hole < 0 ? maxLength : hole - offset;
        return ValueTask.FromResult((true, Math.Clamp(mapped, 1, maxLength)));
    }

    private void Sync()
    {
        if (Libc.fdatasync(fd) != 0)
            throw new ScsiException(Sense.WriteError, $"{path}: fdatasync failed with errno {Marshal.GetLastPInvokeError()}");
    }

    private ValueTask Fallocate(int mode, long offset, long length, CancellationToken ct)
    {
        if (Libc.fallocate(fd, mode, offset, length) == 0)
            return default;
        var errno = Marshal.GetLastPInvokeError();
        if (errno != Libc.EOPNOTSUPP && errno != 19 /* ENODEV */)
            throw new ScsiException(Sense.WriteError, $"{path}: fallocate failed with errno {errno}");
        return WriteZeroBuffersAsync(offset, length, ct); // the filesystem cannot do it: write zeros
    }

    private async ValueTask WriteZeroBuffersAsync(long offset, long length, CancellationToken ct)
    {
        var zeros = new byte[(int)Math.Min(length, 1 << 20)];
        for (long done = 0; done < length;)
        {
            var n = (int)Math.Min(length - done, zeros.Length);
            await RandomAccess.WriteAsync(handle, zeros.AsMemory(0, n), offset + done, ct);
            done += n;
        }
    }

    public ValueTask DisposeAsync()
    {
        handle.Dispose();
        return default;
    }
}
