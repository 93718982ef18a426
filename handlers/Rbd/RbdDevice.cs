using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using HandlerRuntime.Handlers.Rbd.Native;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging;

namespace HandlerRuntime.Handlers.Rbd;

/// <summary>
/// An RBD image as a block device. Every read, write, flush, discard, write-zeroes and
/// compare-and-write is one librbd asynchronous operation (<see cref="RbdOperation"/>): no thread
/// waits for the cluster per command. The exclusive lock and the ALUA state it drives are in
/// RbdDevice.Lock.cs; cluster loss and return in RbdDevice.Recovery.cs.
/// </summary>
internal sealed partial class RbdDevice : IBlockDevice, IScsiCommandHandler, IProvisioningStatus, IHasStatus, IImageWatcher
{
    private const byte CompareAndWriteOpcode = 0x89;
    private const int CompareAndWriteFuaBit = 0x08; // CDB byte 1

    private readonly RbdConfig config;
    private readonly ILogger log;
    private readonly IDeviceEvents events;
    private readonly int blockSize;
    private readonly bool readOnly;
    private readonly OperationPool ops = new();
    private readonly CancellationTokenSource closing = new();
    private volatile ImageSession session;
    private volatile DeviceGeometry geometry;

    private RbdDevice(RbdConfig config, ImageSession session, int blockSize, bool readOnly, long size, ILogger log, IDeviceEvents events)
    {
        this.config = config;
        this.session = session;
        this.blockSize = blockSize;
        this.readOnly = readOnly;
        this.log = log;
        this.events = events;
        geometry = GeometryFor(size);
        recovery = BuildRecoveryPipeline();
    }

    /// <summary>Opens the LUN's image (creating it with <paramref name="createSize"/> when missing and that is not 0).</summary>
    public static async Task<RbdDevice> OpenAsync(RbdConfig config, long createSize, int blockSize, bool readOnly, ILogger log, IDeviceEvents events, CancellationToken ct)
    {
        var key = new ClusterKey(config.EffectiveConfPath, config.EffectiveClientId, config.OsdOpTimeoutSeconds);
        var connection = await ClusterConnection.AcquireAsync(key, log, ct);
        ImageSession opened;
        try
        {
            opened = await Task.Run(() => ImageSession.Open(connection, config, readOnly, createSize, m => log.LogInformation("rbd: {What}", m)), ct);
        }
        catch
        {
            connection.Release();
            throw;
        }
        RbdDevice? device = null;
        try
        {
            var size = await Task.Run(opened.Size, ct);
            if (createSize > 0 && createSize != size)
                log.LogWarning("rbd: image {Image} is {Size} bytes; the LUN's requested {Requested} bytes were only for creating it, the image's size is served", config, size, createSize);
            if (size < blockSize)
                throw new RbdException(-Errno.EINVAL, $"Image {config} is {size} bytes, smaller than one {blockSize}-byte block; resize it (rbd resize --size 1G {config}).");
            device = new RbdDevice(config, opened, blockSize, readOnly, size, log, events);
            opened.Watch(device);
            await Task.Run(device.StartLockModel, ct);
            return device;
        }
        catch
        {
            if (device is not null)
                await device.DisposeAsync();
            else
                opened.Dispose();
            throw;
        }
    }

    private DeviceGeometry GeometryFor(long size)
    {
        var objectBlocks = (int)Math.Min(int.MaxValue, session.ObjectSize / blockSize);
        var discardGranularity = int.TryParse(Librados.ConfGet(session.Connection.Handle, "rbd_discard_granularity_bytes"), out var g) && g >= blockSize ? g : blockSize;
        return DeviceGeometry.FromSize(size, blockSize).WithUnmapGranularity(discardGranularity) with { OptimalTransferBlocks = objectBlocks };
    }

    public DeviceGeometry Geometry => geometry;

    // Write caching is off in librbd (rbd_cache=false): a completed write is on the OSDs, so FUA
    // needs no cache flush of ours; a FUA write is still followed by a flush, as the contract says.
    public DeviceCapabilities Capabilities => (readOnly ? DeviceCapabilities.None
        : DeviceCapabilities.Write | DeviceCapabilities.Flush | DeviceCapabilities.Fua | DeviceCapabilities.Unmap | DeviceCapabilities.WriteZeroes | DeviceCapabilities.Resize)
        | DeviceCapabilities.NonBlocking; // rbd_aio_* only queue: the runtime may call from its network threads

    public ThreadModel ThreadModel => ThreadModel.Parallel;

    // ---- the data path ----

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var s = session;
        var op = ops.Rent();
        ValueTask<RbdResult> pending;
        try
        {
            pending = op.Read(s.Image, offset, destination);
        }
        catch (ObjectDisposedException)
        {
            ops.Return(op);
            throw Reopening();
        }
        return Complete(pending, s, write: false);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
    {
        if (!WritesReady || (flags & WriteFlags.Fua) != 0)
            return WriteSlowAsync(offset, source, flags);
        return Complete(SubmitWrite(session, offset, source, out var s), s, write: true);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteSlowAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags)
    {
        await AcquireLockAsync();
        await Complete(SubmitWrite(session, offset, source, out var s), s, write: true);
        if ((flags & WriteFlags.Fua) != 0)
            await FlushAsync(CancellationToken.None);
    }

    private ValueTask<RbdResult> SubmitWrite(ImageSession current, long offset, ReadOnlyMemory<byte> source, out ImageSession s)
    {
        s = current;
        var op = ops.Rent();
        try
        {
            return op.Write(s.Image, offset, source);
        }
        catch (ObjectDisposedException)
        {
            ops.Return(op);
            throw Reopening();
        }
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken)
        => Run(static (op, image, _) => op.Flush(image), 0, write: true);

    public ValueTask UnmapAsync(long offset, long length, CancellationToken cancellationToken)
        => WritesReady ? Run(static (op, image, a) => op.Discard(image, a.Offset, a.Length), (Offset: offset, Length: length), write: true)
            : AfterLockAsync(static (d, a) => d.UnmapAsync(a.Offset, a.Length, default), (Offset: offset, Length: length));

    public ValueTask WriteZeroesAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken)
    {
        if (!WritesReady || (flags & ZeroFlags.Fua) != 0)
            return WriteZeroesSlowAsync(offset, length, flags);
        return Run(static (op, image, a) => op.WriteZeroes(image, a.Offset, a.Length, a.KeepAllocated), (Offset: offset, Length: length, KeepAllocated: (flags & ZeroFlags.MayUnmap) == 0), write: true);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteZeroesSlowAsync(long offset, long length, ZeroFlags flags)
    {
        await AcquireLockAsync();
        await Run(static (op, image, a) => op.WriteZeroes(image, a.Offset, a.Length, a.KeepAllocated), (Offset: offset, Length: length, KeepAllocated: (flags & ZeroFlags.MayUnmap) == 0), write: true);
        if ((flags & ZeroFlags.Fua) != 0)
            await FlushAsync(CancellationToken.None);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask AfterLockAsync<TArg>(Func<RbdDevice, TArg, ValueTask> then, TArg arg)
    {
        await AcquireLockAsync();
        await then(this, arg);
    }

    private ValueTask Run<TArg>(Func<RbdOperation, ImageHandle, TArg, ValueTask<RbdResult>> submit, TArg arg, bool write)
    {
        var s = session;
        var op = ops.Rent();
        ValueTask<RbdResult> pending;
        try
        {
            pending = submit(op, s.Image, arg);
        }
        catch (ObjectDisposedException)
        {
            ops.Return(op);
            throw Reopening();
        }
        return Complete(pending, s, write);
    }

    private ValueTask Complete(ValueTask<RbdResult> pending, ImageSession s, bool write)
    {
        if (!pending.IsCompleted)
            return CompleteAsync(pending, s, write);
        Check(pending.Result.Return, s, write);
        return default;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask CompleteAsync(ValueTask<RbdResult> pending, ImageSession s, bool write)
        => Check((await pending).Return, s, write);

    /// <summary>Fails the command for a negative return, after telling recovery and the lock model what it means.</summary>
    private void Check(long r, ImageSession s, bool write)
    {
        if (r >= 0)
            return;
        Trouble((int)r, s, write);
        throw new ScsiException(RbdSense.For(r, write), $"librbd: {(write ? "write" : "read")} failed with {Errno.Describe((int)r)}");
    }

    private ScsiException Reopening() => new(Sense.NotReadyTransitioning, "the image is being reopened after the cluster fenced its connection");

    // ---- COMPARE AND WRITE: librbd's own, atomic on the OSD whichever gateway sends it ----

    public ValueTask<ScsiCommandOutcome> HandleCommandAsync(IScsiCommand command, CancellationToken cancellationToken)
    {
        var cdb = command.Cdb.Span;
        if (cdb.Length < 16 || cdb[0] != CompareAndWriteOpcode || readOnly)
            return new(ScsiCommandOutcome.NotHandled);
        var blocks = cdb[13];
        var offset = (long)BinaryPrimitives.ReadUInt64BigEndian(cdb[2..]) * blockSize;
        var bytes = blocks * blockSize;
        var objectSize = session.ObjectSize;
        // librbd compares and writes within one object only; anything else (no blocks, a short or long
        // data-out, a range across an object boundary) gets the runtime's checks and emulation, which
        // the exclusive lock keeps atomic across gateways too (only the lock owner writes).
        if (blocks == 0 || command.DataOut.Length != 2 * bytes || offset / objectSize != (offset + bytes - 1) / objectSize)
            return new(ScsiCommandOutcome.NotHandled);
        return CompareAndWriteAsync(offset, command.DataOut, (cdb[1] & CompareAndWriteFuaBit) != 0);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<ScsiCommandOutcome> CompareAndWriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua)
    {
        await AcquireLockAsync();
        var s = session;
        var op = ops.Rent();
        ValueTask<RbdResult> pending;
        try
        {
            pending = op.CompareAndWrite(s.Image, offset, data);
        }
        catch (ObjectDisposedException)
        {
            ops.Return(op);
            throw Reopening();
        }
        var result = await pending;
        if (result.Return == -Errno.EILSEQ)
            return ScsiCommandOutcome.CheckCondition(Sense.Miscompare(await MiscompareOffsetAsync(offset, data, result.MismatchOffset)));
        Check(result.Return, s, write: true);
        if (fua)
            await FlushAsync(CancellationToken.None);
        return ScsiCommandOutcome.Good();
    }

    /// <summary>
    /// The offset of the first byte that differed, for the sense's INFORMATION field. librbd 16
    /// reports the start of the compared range rather than the byte, so the range is read back and
    /// compared here; if another write changed it meanwhile, librbd's offset is what is left.
    /// </summary>
    private async ValueTask<ulong> MiscompareOffsetAsync(long offset, ReadOnlyMemory<byte> data, ulong reported)
    {
        var half = data.Length / 2;
        var current = new byte[half]; // a miscompare is the exception: no pooling for it
        var s = session;
        var op = ops.Rent();
        var read = await op.Read(s.Image, offset, current);
        var same = read.Return >= 0 ? current.AsSpan().CommonPrefixLength(data.Span[..half]) : half;
        return same < half ? (ulong)same : reported >= (ulong)offset ? reported - (ulong)offset : 0;
    }

    // ---- resize and the image watch ----

    public async ValueTask ResizeAsync(long newSize, CancellationToken cancellationToken)
    {
        var s = session;
        await Task.Run(() =>
        {
            var r = Librbd.rbd_resize2(s.Image, (ulong)newSize, allowShrink: true, 0, 0);
            if (r < 0)
                throw new ScsiException(RbdSense.For(r, write: true), $"rbd resize of {config} to {newSize} bytes failed: {Errno.Describe(r)}");
        }, cancellationToken);
        geometry = GeometryFor(newSize);
    }

    /// <summary>The header changed (another client resized the image, or a lock moved): tell initiators a new size.</summary>
    void IImageWatcher.ImageUpdated()
    {
        if (closing.IsCancellationRequested)
            return;
        try
        {
            var size = session.Size();
            if (size != geometry.SizeBytes && size >= blockSize)
            {
                geometry = GeometryFor(size);
                log.LogInformation("rbd: image {Image} changed size to {Size} bytes", config, size);
                events.Resized(size);
            }
            CheckLockOwnership();
        }
        catch (RbdException e)
        {
            log.LogWarning("rbd: image {Image} changed, but reading it failed: {Reason}", config, e.Message);
        }
    }

    // ---- GET LBA STATUS: the image's allocation map ----

    public ValueTask<(bool Mapped, long Length)> GetExtentAsync(long offset, long maxLength, CancellationToken cancellationToken)
    {
        var s = session;
        // rbd_diff_iterate2 asks the OSD for each object's allocated extents, one request per object:
        // answer for the object holding the offset only, so one descriptor costs one round trip
        // (qemu's iSCSI driver asks before reads of ranges it has not seen allocated).
        var length = Math.Min(maxLength, s.ObjectSize - offset % s.ObjectSize);
        return new(Task.Run(() => AllocationMap.Extent(s.Image, offset, length), cancellationToken));
    }

    // ---- status for `hrt status` ----

    public JsonObject GetStatus()
    {
        var s = session;
        return new JsonObject
        {
            ["cluster"] = s.Connection.Fsid,
            ["client"] = $"client.{config.EffectiveClientId}.{s.Connection.InstanceId}",
            ["address"] = s.Connection.Address,
            ["pool"] = config.Pool,
            ["image"] = config.Image,
            ["size"] = geometry.SizeBytes,
            ["objectSize"] = s.ObjectSize,
            ["osdOpTimeout"] = s.Connection.OsdOpTimeoutSeconds,
            ["connection"] = ConnectionState,
            ["watch"] = s.Watching ? "registered" : "none",
            ["exclusiveLock"] = s.HasExclusiveLock ? "enabled" : "disabled",
            ["lock"] = LockStateName,
            ["lockOwner"] = LockOwnerText,
        };
    }

    public async ValueTask DisposeAsync()
    {
        if (closing.IsCancellationRequested)
            return;
        closing.Cancel();
        await StopLockModelAsync();
        var s = session;
        await Task.Run(s.Dispose);
        ops.Dispose();
        closing.Dispose();
    }
}
