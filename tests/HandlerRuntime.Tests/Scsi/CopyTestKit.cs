using System.Buffers.Binary;
using HandlerRuntime.Scsi;
using HandlerRuntime.Scsi.Copy;
using HandlerRuntime.Sdk;
using Serilog;

namespace HandlerRuntime.Tests.Scsi;

/// <summary>EXTENDED COPY and RECEIVE COPY RESULTS CDBs and parameter lists (SPC-4 6.4, 6.18).</summary>
internal static class CopyCdbs
{
    public static byte[] ExtendedCopy(int parameterListLength)
    {
        var c = new byte[16];
        c[0] = 0x83;
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(10), (uint)parameterListLength);
        return c;
    }

    public static byte[] ReceiveCopyResults(byte serviceAction, byte listId = 0, uint allocation = 1024)
    {
        var c = new byte[16];
        c[0] = 0x84;
        c[1] = serviceAction;
        c[2] = listId;
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(10), allocation);
        return c;
    }

    public const byte CopyStatus = 0x00;
    public const byte OperatingParameters = 0x03;
    public const byte FailedSegmentDetails = 0x04;
}

/// <summary>Builds EXTENDED COPY(LID1) parameter lists, well-formed unless told otherwise.</summary>
internal sealed class CopyList
{
    private readonly List<byte[]> cscds = [];
    private readonly List<byte[]> segments = [];

    public byte ListId { get; set; } = 1;

    /// <summary>LIST ID USAGE: 0 hold, 2 discard, 3 none.</summary>
    public int Usage { get; set; }

    public uint InlineLength { get; set; }

    /// <summary>An identification CSCD descriptor naming an LU by its NAA designator.</summary>
    public CopyList Naa(ulong naa, int blockSize = 512, bool pad = false, byte peripheralType = 0)
    {
        var d = new byte[32];
        d[0] = 0xE4;
        d[1] = peripheralType;
        d[4] = 0x01; // binary
        d[5] = 0x03; // LU association, NAA
        d[7] = 8;
        BinaryPrimitives.WriteUInt64BigEndian(d.AsSpan(8), naa);
        d[28] = (byte)(pad ? 0x04 : 0);
        d[29] = (byte)(blockSize >> 16); d[30] = (byte)(blockSize >> 8); d[31] = (byte)blockSize;
        cscds.Add(d);
        return this;
    }

    public CopyList Naa(ScsiLun lun, bool pad = false) => Naa(lun.Identity.Naa, lun.BlockSize, pad);

    /// <summary>A CSCD descriptor given byte for byte.</summary>
    public CopyList Cscd(byte[] descriptor)
    {
        cscds.Add(descriptor);
        return this;
    }

    /// <summary>A block to block segment descriptor.</summary>
    public CopyList Segment(ushort source, ushort destination, ushort blocks, ulong sourceLba, ulong destinationLba, bool dc = false, bool cat = false)
    {
        var d = new byte[28];
        d[0] = 0x02;
        d[1] = (byte)((dc ? 2 : 0) | (cat ? 1 : 0));
        BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(2), 0x18);
        BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(4), source);
        BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(6), destination);
        BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(10), blocks);
        BinaryPrimitives.WriteUInt64BigEndian(d.AsSpan(12), sourceLba);
        BinaryPrimitives.WriteUInt64BigEndian(d.AsSpan(20), destinationLba);
        segments.Add(d);
        return this;
    }

    /// <summary>A segment descriptor given byte for byte.</summary>
    public CopyList RawSegment(byte[] descriptor)
    {
        segments.Add(descriptor);
        return this;
    }

    public byte[] Build()
    {
        var cscdBytes = cscds.SelectMany(d => d).ToArray();
        var segmentBytes = segments.SelectMany(d => d).ToArray();
        var p = new byte[16 + cscdBytes.Length + segmentBytes.Length + InlineLength];
        p[0] = ListId;
        p[1] = (byte)(Usage << 3);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)cscdBytes.Length);
        BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(8), (uint)segmentBytes.Length);
        BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(12), InlineLength);
        cscdBytes.CopyTo(p, 16);
        segmentBytes.CopyTo(p, 16 + cscdBytes.Length);
        return p;
    }

    /// <summary>Offset of CSCD descriptor <paramref name="index"/> in the built list.</summary>
    public int CscdOffset(int index) => 16 + cscds.Take(index).Sum(d => d.Length);

    /// <summary>Offset of segment descriptor <paramref name="index"/> in the built list.</summary>
    public int SegmentOffset(int index) => 16 + cscds.Sum(d => d.Length) + segments.Take(index).Sum(d => d.Length);
}

/// <summary>
/// A block device in memory that records what the core asked of it: flushes and FUA writes
/// (durability), the most requests in flight at once (thread model), and reads that wait on
/// a gate (to hold a task in the task set).
/// </summary>
internal sealed class MemoryDevice(long blocks, int blockSize = 512, ThreadModel threadModel = ThreadModel.Parallel, int maxTransferBlocks = 0, bool fua = false) : IBlockDevice
{
    private int inFlight;
    private int maxInFlight;
    private int flushes;
    private int fuaWrites;
    private int writes;
    private int largestWrite;

    public byte[] Data { get; } = new byte[blocks * blockSize];

    public DeviceGeometry Geometry { get; } = new() { LogicalBlockSize = blockSize, BlockCount = blocks, MaxTransferBlocks = maxTransferBlocks };

    public DeviceCapabilities Capabilities { get; } = DeviceCapabilities.Write | DeviceCapabilities.Flush | (fua ? DeviceCapabilities.Fua : 0);

    public ThreadModel ThreadModel { get; } = threadModel;

    /// <summary>When set, reads wait for it.</summary>
    public TaskCompletionSource? ReadGate { get; set; }

    /// <summary>Completed when a read is waiting at the gate.</summary>
    public TaskCompletionSource ReadWaiting { get; private set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public int MaxInFlight => Volatile.Read(ref maxInFlight);
    public int Flushes => Volatile.Read(ref flushes);
    public int FuaWrites => Volatile.Read(ref fuaWrites);
    public int Writes => Volatile.Read(ref writes);
    public int LargestWrite => Volatile.Read(ref largestWrite);

    public void Fill(long lba, int count, Func<long, byte> pattern)
    {
        for (long i = 0; i < (long)count * blockSize; i++)
            Data[lba * blockSize + i] = pattern(lba * blockSize + i);
    }

    public byte[] Blocks(long lba, int count) => Data.AsSpan((int)(lba * blockSize), count * blockSize).ToArray();

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        Enter();
        try
        {
            if (ReadGate is { } gate)
            {
                ReadWaiting.TrySetResult();
                await gate.Task.WaitAsync(cancellationToken);
            }
            await Task.Yield();
            Data.AsMemory((int)offset, destination.Length).CopyTo(destination);
        }
        finally
        {
            Leave();
        }
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
    {
        Enter();
        try
        {
            await Task.Yield();
            source.CopyTo(Data.AsMemory((int)offset));
            Interlocked.Increment(ref writes);
            int seen;
            while (source.Length > (seen = Volatile.Read(ref largestWrite)) && Interlocked.CompareExchange(ref largestWrite, source.Length, seen) != seen)
            {
            }
            if ((flags & WriteFlags.Fua) != 0)
                Interlocked.Increment(ref fuaWrites);
        }
        finally
        {
            Leave();
        }
    }

    public async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        Enter();
        await Task.Yield();
        Interlocked.Increment(ref flushes);
        Leave();
    }

    private void Enter()
    {
        var n = Interlocked.Increment(ref inFlight);
        int seen;
        while (n > (seen = Volatile.Read(ref maxInFlight)) && Interlocked.CompareExchange(ref maxInFlight, n, seen) != seen)
        {
        }
    }

    private void Leave() => Interlocked.Decrement(ref inFlight);

    public ValueTask DisposeAsync() => default;
}

/// <summary>
/// Several LUs in one target of a real <see cref="TargetRegistry"/>, each with the registry as
/// its copy target directory, as the LUN registry sets them up: EXTENDED COPY between them
/// runs through the real SCSI core.
/// </summary>
internal sealed class CopyRig
{
    public const string TargetName = "iqn.2026-11.org.handler-runtime:test"; // ScsiHarness.NewNexus's target port

    private CopyRig(TargetRegistry registry, MemoryDevice[] devices, ScsiLun[] luns)
    {
        Registry = registry;
        Target = registry.Find(TargetName)!;
        Devices = devices;
        Luns = luns;
    }

    public TargetRegistry Registry { get; }
    public ScsiTarget Target { get; }
    public MemoryDevice[] Devices { get; }
    public ScsiLun[] Luns { get; }
    public ItNexus Nexus { get; } = ScsiHarness.NewNexus();

    public static async Task<CopyRig> StartAsync(params MemoryDevice[] devices) => await StartAsync(devices, devices.Select(_ => true).ToArray());

    public static async Task<CopyRig> StartAsync(MemoryDevice[] devices, bool[] writeCache, bool[]? readOnly = null)
    {
        var registry = new TargetRegistry(TargetName);
        var target = registry.Find(TargetName)!;
        var luns = new ScsiLun[devices.Length];
        for (var i = 0; i < devices.Length; i++)
        {
            luns[i] = new ScsiLun(LunIdentity.FromName($"copy-{Guid.NewGuid():N}", "test"), devices[i], readOnly?[i] ?? false, writeCache[i], new LoggerConfiguration().CreateLogger())
            {
                CopyTargets = new TargetRegistryCopyTargets(registry),
            };
            Assert.True(target.TryMap(i, luns[i]));
        }
        var rig = new CopyRig(registry, devices, luns);
        for (var i = 0; i < devices.Length; i++)
            for (var n = 0; n < 8 && !(await rig.RunAsync(i, Cdbs.TestUnitReady())).Good; n++)
            {
            }
        return rig;
    }

    public Task<ScsiResult> RunAsync(int lun, byte[] cdb, byte[]? dataOut = null, ItNexus? nexus = null, TaskAttribute attribute = TaskAttribute.Simple)
        => ScsiHarness.RunOnAsync(Target, nexus ?? Nexus, cdb, dataOut, lun: (ulong)lun, attribute: attribute);

    /// <summary>Sends <paramref name="list"/> as an EXTENDED COPY to LU <paramref name="lun"/>.</summary>
    public Task<ScsiResult> CopyAsync(int lun, byte[] list, ItNexus? nexus = null)
        => RunAsync(lun, CopyCdbs.ExtendedCopy(list.Length), list, nexus);
}

internal static class SenseAssert
{
    public static void Is(ScsiResult r, SenseKey key, byte asc, byte ascq)
    {
        Assert.True(r.Status == ScsiStatus.CheckCondition, $"expected CHECK CONDITION {key} {asc:X2}h/{ascq:X2}h, got {r}");
        Assert.Equal((key, asc, ascq), (r.Sense.Key, r.Sense.Asc, r.Sense.Ascq));
    }

    public static void Is(ScsiException e, SenseKey key, byte asc, byte ascq)
        => Assert.Equal((key, asc, ascq), (e.Sense.Key, e.Sense.Asc, e.Sense.Ascq));

    /// <summary>The field pointer of a sense-key specific field: (SKSV and flags byte, pointer).</summary>
    public static (int Flags, int Pointer) FieldPointer(SenseData s) => ((int)(s.SenseKeySpecific >> 16), (int)(s.SenseKeySpecific & 0xFFFF));
}
