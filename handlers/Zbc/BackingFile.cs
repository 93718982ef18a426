using HandlerRuntime.Handlers.Shared;
using System.Runtime.InteropServices;
using HandlerRuntime.Sdk;
using Microsoft.Win32.SafeHandles;

namespace HandlerRuntime.Handlers.Zbc;

/// <summary>
/// The file operations the device needs, so that the durability rules can be tested
/// against a simulated medium that loses unsynced writes (tests' power-cut file) as well
/// as against the real one. Positional only; safe for concurrent use.
/// </summary>
internal interface IBackingFile : IDisposable
{
    long Length { get; }

    void SetLength(long length);

    int Read(Span<byte> destination, long offset);

    ValueTask<int> ReadAsync(Memory<byte> destination, long offset, CancellationToken ct);

    void Write(ReadOnlySpan<byte> source, long offset);

    ValueTask WriteAsync(ReadOnlyMemory<byte> source, long offset, CancellationToken ct);

    /// <summary>Makes a range read as zeros and frees it; false when the filesystem cannot.</summary>
    bool TryPunchHole(long offset, long length);

    /// <summary>fdatasync: completed writes are durable.</summary>
    void SyncData();

    /// <summary>fsync: also the file's metadata (its extents, such as punched holes).</summary>
    void SyncAll();
}

/// <summary>A regular file, through pread/pwrite, fdatasync/fsync and fallocate.</summary>
internal sealed class OsFile(SafeFileHandle handle, string path) : IBackingFile
{
    private readonly int fd = (int)handle.DangerousGetHandle();

    public long Length => RandomAccess.GetLength(handle);

    public void SetLength(long length) => RandomAccess.SetLength(handle, length);

    public int Read(Span<byte> destination, long offset) => RandomAccess.Read(handle, destination, offset);

    public ValueTask<int> ReadAsync(Memory<byte> destination, long offset, CancellationToken ct) => RandomAccess.ReadAsync(handle, destination, offset, ct);

    public void Write(ReadOnlySpan<byte> source, long offset) => RandomAccess.Write(handle, source, offset);

    public ValueTask WriteAsync(ReadOnlyMemory<byte> source, long offset, CancellationToken ct) => RandomAccess.WriteAsync(handle, source, offset, ct);

    public bool TryPunchHole(long offset, long length)
    {
        if (Posix.fallocate(fd, Posix.FallocPunchHole | Posix.FallocKeepSize, offset, length) == 0)
            return true;
        var errno = Marshal.GetLastPInvokeError();
        if (errno is Errnos.EOPNOTSUPP or Errnos.ENODEV)
            return false;
        throw new DeviceIOException(errno, $"{path}: fallocate");
    }

    public void SyncData()
    {
        if (Posix.fdatasync(fd) != 0)
            throw new DeviceIOException(Marshal.GetLastPInvokeError(), $"{path}: fdatasync");
    }

    public void SyncAll()
    {
        if (Posix.fsync(fd) != 0)
            throw new DeviceIOException(Marshal.GetLastPInvokeError(), $"{path}: fsync");
    }

    public void Dispose() => handle.Dispose();
}
