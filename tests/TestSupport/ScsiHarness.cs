using HandlerRuntime.Buffers;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;
using Serilog;

namespace HandlerRuntime.TestSupport;

/// <summary>The outcome of one command run through the SCSI core.</summary>
public sealed record ScsiResult(ScsiStatus Status, SenseData Sense, byte[] SenseBytes, byte[] DataIn)
{
    public bool Good => Status == ScsiStatus.Good;

    public override string ToString() => Status == ScsiStatus.CheckCondition ? $"CHECK CONDITION {Sense}" : $"{Status} ({DataIn.Length} bytes)";
}

/// <summary>
/// Runs CDBs through a real <see cref="ScsiTarget"/> and <see cref="ScsiLun"/> over a
/// real device, in process: the SCSI core exactly as fabrics use it, without a network.
/// </summary>
public sealed class ScsiHarness : IAsyncDisposable
{
    /// <summary>The target port every harness nexus reaches (relative port 1, iSCSI).</summary>
    public static readonly TargetPort Port = new("iqn.2026-11.org.handler-runtime:test,t,0x0001", "iqn.2026-11.org.handler-runtime:test", 1, 1, 5);
    private static readonly NexusTable Nexuses = new();
    private static int nextIsid;

    /// <param name="device">The device behind the LU.</param>
    /// <param name="name">The LU's name.</param>
    /// <param name="subtype">The handler subtype it reports.</param>
    /// <param name="readOnly">A read-only LU.</param>
    /// <param name="writeCache">The default WCE.</param>
    /// <param name="stateDirectory">The LUN state directory (APTPL reservations live there); null for none.</param>
    public ScsiHarness(IBlockDevice device, string name = "test", string subtype = "test", bool readOnly = false, bool writeCache = true, string? stateDirectory = null, bool removable = false)
    {
        Device = device;
        Lun = new ScsiLun(LunIdentity.FromName(name, subtype), device, readOnly, writeCache, new LoggerConfiguration().CreateLogger(), stateDirectory, removable);
        Target = new ScsiTarget(Port.TargetName);
        Target.TryMap(0, Lun);
        Nexus = NewNexus();
    }

    public IBlockDevice Device { get; }
    public ScsiLun Lun { get; }
    public ScsiTarget Target { get; }

    /// <summary>The default I_T nexus commands come from.</summary>
    public ItNexus Nexus { get; }

    /// <summary>Another initiator port, for reservation and unit attention tests.</summary>
    public static ItNexus NewNexus(string initiator = "iqn.2026-11.org.handler-runtime:initiator")
        => Nexuses.Get($"{initiator},i,0x{Interlocked.Increment(ref nextIsid):x12}", initiator, Port);

    /// <summary>Runs one CDB. <paramref name="dataOut"/> is the write data; <paramref name="allocation"/> the data-in the initiator accepts.</summary>
    public Task<ScsiResult> RunAsync(byte[] cdb, byte[]? dataOut = null, int allocation = 1 << 20, ItNexus? nexus = null, ulong lun = 0, TaskAttribute attribute = TaskAttribute.Simple)
        => RunOnAsync(Target, nexus ?? Nexus, cdb, dataOut, allocation, lun, attribute);

    /// <summary>Runs one CDB on any target, as a fabric would.</summary>
    public static async Task<ScsiResult> RunOnAsync(ScsiTarget target, ItNexus nexus, byte[] cdb, byte[]? dataOut = null, int allocation = 1 << 20, ulong lun = 0, TaskAttribute attribute = TaskAttribute.Simple)
    {
        var task = new ScsiTask();
        try
        {
            task.Nexus = nexus;
            task.Lun = lun;
            task.Attribute = attribute;
            task.SetCdb(cdb);
            task.ExpectedDataInLength = allocation;
            if (dataOut is not null)
            {
                task.DataOutBuffer = BufferPool.Shared.Rent(dataOut.Length);
                dataOut.CopyTo(task.DataOutBuffer.Span);
                task.DataOutLength = dataOut.Length;
                task.ExpectedDataOutLength = dataOut.Length;
                task.Direction = DataDirection.Out;
            }
            else
            {
                task.Direction = DataDirection.In;
            }
            await target.ExecuteAsync(task);
            var dataIn = task.DataInBuffer is null ? [] : task.DataInBuffer.Array.AsSpan(0, Math.Min(task.DataInLength, allocation)).ToArray();
            return new ScsiResult(task.Status, task.Sense, task.SenseBytes.ToArray(), dataIn);
        }
        finally
        {
            task.Reset();
        }
    }

    /// <summary>Clears the power-on unit attention a new nexus starts with.</summary>
    public async Task ClearUnitAttentionAsync(ItNexus? nexus = null)
    {
        for (var i = 0; i < 8; i++)
            if ((await RunAsync([0, 0, 0, 0, 0, 0], nexus: nexus)).Good)
                return;
    }

    public async ValueTask DisposeAsync() => await Device.DisposeAsync();
}
