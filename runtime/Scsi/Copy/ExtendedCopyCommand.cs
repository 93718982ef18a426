using HandlerRuntime.Buffers;
using HandlerRuntime.Scsi.Commands;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Copy;

/// <summary>
/// EXTENDED COPY(LID1) (SPC-4 6.4): the LU that receives it is the copy manager and copies
/// block ranges between any LUs of this runtime the initiator may reach, itself included.
/// The parameter list is validated in full before any data moves; then each segment is
/// checked (copy targets reachable, block sizes, ranges, write protection) and copied in
/// bounded chunks through one pooled buffer, with writes as durable as the destination's
/// write cache setting asks.
/// </summary>
internal static class ExtendedCopyCommand
{
    public static ValueTask Execute(ScsiLun lun, ScsiTask task)
    {
        var length = Cdb.U32(task.CdbSpan, 10);
        // SPC-4 6.4.1: a PARAMETER LIST LENGTH of zero copies nothing, changes nothing and is not an error.
        if (length == 0)
            return default;
        task.RequireDataOut(length);
        var list = CopyParameterList.Parse(task.DataOutBuffer!.Memory[..(int)length]);
        var operation = lun.Copies.Begin(task.Nexus, list.ListId, list.Usage);
        return RunAsync(lun, task, list, operation);
    }

    private static async ValueTask RunAsync(ScsiLun lun, ScsiTask task, CopyParameterList list, CopyOperation operation)
    {
        var job = new CopyJob(lun, task, list, operation);
        try
        {
            await job.RunAsync();
            operation.Succeed();
        }
        catch (ScsiException e)
        {
            operation.Fail(e.Status, e.Status == ScsiStatus.CheckCondition ? FormatSense(lun, e.Sense) : null);
            throw;
        }
        catch (OperationCanceledException) when (task.Aborted)
        {
            operation.Fail(ScsiStatus.TaskAborted, null);
            throw;
        }
        catch
        {
            // ScsiLun answers any other exception with HARDWARE ERROR, INTERNAL TARGET FAILURE.
            operation.Fail(ScsiStatus.CheckCondition, FormatSense(lun, Sense.InternalTargetFailure));
            throw;
        }
        finally
        {
            job.Dispose();
            lun.Copies.End(operation);
        }
    }

    /// <summary>The sense bytes exactly as the initiator receives them, kept for FAILED SEGMENT DETAILS.</summary>
    private static byte[] FormatSense(ScsiLun lun, SenseData sense)
    {
        Span<byte> bytes = stackalloc byte[ScsiTask.MaxSenseLength];
        var n = SenseFormatter.Write(sense, lun.Mode.DescriptorSense, bytes);
        return bytes[..n].ToArray();
    }
}

/// <summary>One EXTENDED COPY command's work: CSCD resolution and the segment loop.</summary>
internal sealed class CopyJob(ScsiLun manager, ScsiTask task, CopyParameterList list, CopyOperation operation) : IDisposable
{
    /// <summary>A segment ready to copy: where from, where to, and how many bytes.</summary>
    private readonly record struct SegmentPlan(ScsiLun Source, ScsiLun Destination, long SourceOffset, long DestinationOffset, long DataBytes);

    private readonly ScsiLun?[] resolved = new ScsiLun?[list.Cscds.Count];
    private ScsiTask? proxy;

    private CancellationToken AbortToken => task.AbortToken;

    public async ValueTask RunAsync()
    {
        // Every segment is checked before any data moves, so a malformed request changes
        // nothing; each is checked again just before it runs, since the LUs may change meanwhile
        // (resize, write protect, delete).
        foreach (var segment in list.Segments)
            Plan(segment);
        foreach (var segment in list.Segments)
        {
            AbortToken.ThrowIfCancellationRequested();
            await CopyAsync(segment, Plan(segment));
            operation.SegmentDone();
        }
    }

    private SegmentPlan Plan(in BlockSegment segment)
    {
        var source = Resolve(segment, segment.SourceId, BlockSegment.SourceIdField, out var sourcePad);
        var destination = Resolve(segment, segment.DestinationId, BlockSegment.DestinationIdField, out var destinationPad);

        // SPC-4 6.4.6.5: DC says whose blocks NUMBER OF BLOCKS counts. When the byte count is
        // not whole blocks of the other side, the segment is inexact (SPC-4 6.4.6.1): with PAD
        // set on that side and CAT clear, the destination's last block is padded with zeros, or
        // the source's last block is read whole and its excess dropped. CAT (carry the residue
        // into the next segment) is not supported, so an inexact segment with CAT is refused.
        var bytes = (long)segment.Blocks * (segment.DestinationCount ? destination.BlockSize : source.BlockSize);
        if ((bytes % source.BlockSize != 0 && (!sourcePad || segment.Cat)) || (bytes % destination.BlockSize != 0 && (!destinationPad || segment.Cat)))
            throw SegmentFailed(Sense.UnexpectedInexactSegment, segment, BlockSegment.BlocksField);

        CheckRange(source, segment.SourceLba, BlocksCovering(bytes, source.BlockSize), segment, BlockSegment.SourceLbaField);
        CheckRange(destination, segment.DestinationLba, BlocksCovering(bytes, destination.BlockSize), segment, BlockSegment.DestinationLbaField);
        CheckUsable(source, writing: false, segment, BlockSegment.SourceIdField);
        CheckUsable(destination, writing: true, segment, BlockSegment.DestinationIdField);
        return new SegmentPlan(source, destination, (long)segment.SourceLba * source.BlockSize, (long)segment.DestinationLba * destination.BlockSize, bytes);
    }

    /// <summary>
    /// The LU a CSCD descriptor ID names: FFFFh is this copy manager's own LU; other IDs index
    /// the CSCD list, whose identification descriptors are matched against this LU and then the
    /// LUs the initiator may reach. Anything else is a copy target this copy manager cannot
    /// reach (SPC-4 6.4.3: COPY ABORTED; LIO answers the same so that initiators fall back).
    /// </summary>
    private ScsiLun Resolve(in BlockSegment segment, ushort id, int idField, out bool pad)
    {
        pad = false;
        if (id == CopyLimits.CopyManagerLuId)
            return manager;
        if (id >= list.Cscds.Count)
            throw SegmentFailed(Sense.CopyTargetDeviceNotReachable, segment, idField);
        var cscd = list.Cscds[id];
        pad = cscd.Pad;
        // A block to block segment needs block devices on both sides.
        if (cscd.PeripheralType != 0x00)
            throw SegmentFailed(Sense.IncorrectCopyTargetDeviceType, segment, cscd.Offset + 1, inSegment: false);
        var lun = resolved[id] ??= Find(cscd) ?? throw SegmentFailed(Sense.CopyTargetDeviceNotReachable, segment, idField);
        // The application client computed its LBAs with this block length; a different one would misplace every block.
        if (cscd.DiskBlockLength != lun.BlockSize)
            throw SegmentFailed(Sense.IncorrectCopyTargetDeviceType, segment, cscd.Offset + CscdDescriptor.DiskBlockLengthField, inSegment: false);
        return lun;
    }

    private ScsiLun? Find(in CscdDescriptor cscd)
    {
        if (LuDesignators.Designates(manager, cscd))
            return manager;
        if (manager.CopyTargets is { } directory)
            foreach (var lun in directory.ReachableFrom(task.Nexus))
                if (LuDesignators.Designates(lun, cscd))
                    return lun;
        return null;
    }

    private static long BlocksCovering(long bytes, int blockSize) => (bytes + blockSize - 1) / blockSize;

    private static void CheckRange(ScsiLun lun, ulong lba, long blocks, in BlockSegment segment, int lbaField)
    {
        if (!lun.Contains(lba, (ulong)blocks))
            throw SegmentFailed(Sense.CopyAborted, segment, lbaField);
    }

    private static void CheckUsable(ScsiLun lun, bool writing, in BlockSegment segment, int idField)
    {
        if (lun.NotReadySense is { } notReady)
            throw SegmentFailed(Reported(notReady), segment, idField);
        if (writing && lun.WriteProtected)
            throw SegmentFailed(Reported(Sense.WriteProtected), segment, idField);
    }

    private async ValueTask CopyAsync(BlockSegment segment, SegmentPlan plan)
    {
        if (plan.DataBytes == 0)
            return;
        var source = plan.Source;
        var destination = plan.Destination;
        var largestBlock = Math.Max(source.BlockSize, destination.BlockSize);
        var chunk = Math.Min(CopyLimits.ChunkBytes, Math.Min((long)source.MaxTransferBlocks * source.BlockSize, (long)destination.MaxTransferBlocks * destination.BlockSize));
        chunk = Math.Max(largestBlock, chunk - chunk % largestBlock);
        var chunks = (plan.DataBytes + chunk - 1) / chunk;

        // Within one LU, a destination that starts inside the source range is copied from the
        // end backwards, so every block is read before it is overwritten: the result is the
        // one a copy through a whole-segment buffer would give.
        var backwards = source == destination && plan.DestinationOffset > plan.SourceOffset && plan.DestinationOffset < plan.SourceOffset + plan.DataBytes;
        using var buffer = BufferPool.Shared.Rent((int)Math.Min(chunk, BlocksCovering(plan.DataBytes, largestBlock) * largestBlock));
        for (long i = 0; i < chunks; i++)
        {
            AbortToken.ThrowIfCancellationRequested();
            var at = (backwards ? chunks - 1 - i : i) * chunk;
            var n = (int)Math.Min(chunk, plan.DataBytes - at);
            var readBytes = (int)BlocksCovering(n, source.BlockSize) * source.BlockSize;
            var writeBytes = (int)BlocksCovering(n, destination.BlockSize) * destination.BlockSize;
            await StepAsync(source, plan.SourceOffset + at, buffer.Array.AsMemory(0, readBytes), write: false, segment);
            buffer.Array.AsSpan(n, Math.Max(0, writeBytes - n)).Clear(); // PAD: zeros complete the destination's last block
            await StepAsync(destination, plan.DestinationOffset + at, buffer.Array.AsMemory(0, writeBytes), write: true, segment);
            operation.AddWritten(writeBytes);
        }
    }

    /// <summary>
    /// One read or write on a copy source or destination. The copy manager's own LU is used
    /// directly (this command holds its place in that LU's task set); another LU is entered as
    /// a task for the duration of the step, so its ordering, concurrency limit and quiesce hold.
    /// </summary>
    private async ValueTask StepAsync(ScsiLun lun, long offset, Memory<byte> data, bool write, BlockSegment segment)
    {
        var idField = write ? BlockSegment.DestinationIdField : BlockSegment.SourceIdField;
        var foreign = lun != manager;
        if (foreign)
        {
            proxy ??= new ScsiTask();
            proxy.Reset();
            proxy.Nexus = task.Nexus;
            proxy.Tag = uint.MaxValue; // the reserved iSCSI task tag: ABORT TASK for a real tag never names this step
            proxy.Attribute = TaskAttribute.Simple;
            if (!await lun.EnterForCopyStepAsync(proxy, manager.Copies.StepAdmissionTimeout, AbortToken))
            {
                AbortToken.ThrowIfCancellationRequested();
                throw SegmentFailed(Sense.CopyTargetDeviceNotReachable, segment, idField);
            }
        }
        try
        {
            // The LU may have changed since the segment was planned (it is only stable while this step holds it).
            var lba = (ulong)(offset / lun.BlockSize);
            CheckRange(lun, lba, data.Length / lun.BlockSize, segment, write ? BlockSegment.DestinationLbaField : BlockSegment.SourceLbaField);
            CheckUsable(lun, write, segment, idField);
            if (write)
                await MediumCommands.WriteDurably(lun, offset, data, fua: false, AbortToken);
            else
                await lun.Device.ReadAsync(offset, data, AbortToken);
        }
        catch (ScsiException e) when (e.Status == ScsiStatus.CheckCondition && e.Sense.Key != SenseKey.CopyAborted)
        {
            // The copy target's own error (medium error, ...) ends the copy as COPY ABORTED with the same condition.
            throw SegmentFailed(Reported(e.Sense), segment, write ? BlockSegment.DestinationLbaField : BlockSegment.SourceLbaField);
        }
        catch (Exception e) when (e is not ScsiException and not OperationCanceledException)
        {
            manager.Log.Error(e, "LUN {Lun}: EXTENDED COPY failed to {Op} LUN {Target}; answering COPY ABORTED", manager.Name, write ? "write" : "read", lun.Name);
            throw SegmentFailed(Reported(Sense.InternalTargetFailure), segment, write ? BlockSegment.DestinationLbaField : BlockSegment.SourceLbaField);
        }
        finally
        {
            if (foreign)
                lun.LeaveAfterCopyStep(proxy!);
        }
        if (foreign && proxy!.Aborted)
            throw SegmentFailed(Sense.CopyTargetDeviceNotReachable, segment, idField); // task management on that LU aborted the step
    }

    /// <summary>A copy target's condition, reported by the copy manager under COPY ABORTED.</summary>
    private static SenseData Reported(SenseData condition) => new(SenseKey.CopyAborted, condition.Asc, condition.Ascq);

    /// <summary>
    /// COPY ABORTED sense for a failed segment (SPC-4 6.4.3): COMMAND-SPECIFIC INFORMATION holds
    /// the segment number, and the segment pointer the byte in error, counted from the segment
    /// descriptor or, for CSCD fields, from the start of the parameter list.
    /// </summary>
    private static ScsiException SegmentFailed(SenseData sense, in BlockSegment segment, int field, bool inSegment = true)
        => new(sense.WithCommandSpecificInformation((ulong)segment.Number).WithSegmentPointer(field, inSegment));

    public void Dispose() => proxy?.Reset();
}
