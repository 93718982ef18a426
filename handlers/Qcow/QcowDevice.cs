using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging;

namespace HandlerRuntime.Handlers.Qcow;

/// <summary>
/// The SCSI-facing device over an opened image (qcow2, or qcow v1 with writes only). Parallel: the image does its own locking
/// (a metadata lock plus guest-cluster range locks), so reads and in-place writes of
/// different commands overlap; allocating writes and metadata changes are serialized.
/// </summary>
internal sealed class QcowDevice : IBlockDevice, IProvisioningStatus
{
    private readonly IImage image;
    private readonly Qcow2Image? qcow2;
    private readonly Qcow1Image? qcow1;
    private readonly ILogger log;

    public QcowDevice(IImage image, int blockSize, ILogger log)
    {
        this.image = image;
        this.log = log;
        qcow2 = image as Qcow2Image;
        qcow1 = image as Qcow1Image;
        var clusterSize = qcow2?.ClusterSize ?? qcow1?.ClusterSize ?? blockSize;
        Geometry = DeviceGeometry.FromSize(image.VirtualSize, blockSize) with
        {
            OptimalTransferBlocks = Math.Max(1, clusterSize / blockSize),
            UnmapGranularityBlocks = Math.Max(1, (qcow2?.AllocationUnit ?? clusterSize) / blockSize),
        };
        var caps = DeviceCapabilities.None;
        if (qcow2 is { Writable: true })
        {
            caps = DeviceCapabilities.Write | DeviceCapabilities.Flush | DeviceCapabilities.Fua | DeviceCapabilities.Unmap | DeviceCapabilities.WriteZeroes;
            if (qcow2.UnmapReadsZeroes)
                caps |= DeviceCapabilities.UnmapReadsZeroes;
        }
        else if (qcow1 is { Writable: true })
            caps = DeviceCapabilities.Write | DeviceCapabilities.Flush | DeviceCapabilities.Fua; // v1 has no zero clusters: the runtime writes zeros
        Capabilities = caps;
    }

    public DeviceGeometry Geometry { get; }

    public DeviceCapabilities Capabilities { get; }

    public ThreadModel ThreadModel => ThreadModel.Parallel;

    internal IImage Image => image;

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        try
        {
            await image.ReadAsync(offset, destination, cancellationToken);
        }
        catch (InvalidDataException e)
        {
            log.LogError("{Path}: read at {Offset} failed: {Reason}", image.Path, offset, e.Message);
            throw new ScsiException(Sense.UnrecoveredReadError, e.Message);
        }
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
        => Guard(qcow2 is not null
            ? qcow2.WriteAsync(offset, source, (flags & WriteFlags.Fua) != 0, cancellationToken)
            : qcow1!.WriteAsync(offset, source, (flags & WriteFlags.Fua) != 0, cancellationToken), "write", offset);

    public ValueTask FlushAsync(CancellationToken cancellationToken)
        => Guard(qcow2 is not null ? qcow2.FlushAsync(cancellationToken) : qcow1!.FlushAsync(), "flush", 0);

    public ValueTask UnmapAsync(long offset, long length, CancellationToken cancellationToken)
        => Guard(qcow2!.ZeroAsync(offset, length, Qcow2Image.ZeroMode.Unmap, fua: false, cancellationToken), "unmap", offset);

    public ValueTask WriteZeroesAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken)
    {
        var mode = (flags & ZeroFlags.MayUnmap) != 0 ? Qcow2Image.ZeroMode.ZeroMayUnmap : Qcow2Image.ZeroMode.ZeroKeep;
        return Guard(qcow2!.ZeroAsync(offset, length, mode, (flags & ZeroFlags.Fua) != 0, cancellationToken), "write zeroes", offset);
    }

    public ValueTask<(bool Mapped, long Length)> GetExtentAsync(long offset, long maxLength, CancellationToken cancellationToken)
        => qcow2 is null ? ValueTask.FromResult((true, maxLength)) : qcow2.GetExtentAsync(offset, maxLength, cancellationToken);

    private async ValueTask Guard(ValueTask operation, string what, long offset)
    {
        try
        {
            await operation;
        }
        catch (InvalidDataException e)
        {
            log.LogError("{Path}: {What} at {Offset} failed: {Reason}", image.Path, what, offset, e.Message);
            throw new ScsiException(Sense.WriteError, e.Message);
        }
        catch (IOException e)
        {
            // The errno it carries tells the runtime what to answer (EIO, ENOSPC ...).
            log.LogError("{Path}: {What} at {Offset} failed: {Reason}", image.Path, what, offset, e.Message);
            throw;
        }
    }

    public ValueTask DisposeAsync() => image.DisposeAsync();
}
