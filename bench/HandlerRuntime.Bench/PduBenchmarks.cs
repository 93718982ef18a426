using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using HandlerRuntime.Fabrics.Iscsi.Protocol;
using HandlerRuntime.TestSupport;
using HandlerRuntime.Scsi;

namespace HandlerRuntime.Bench;

/// <summary>
/// The per-PDU field work of the iSCSI fabric through its named BHS fields: parsing a SCSI
/// Command BHS into a pooled <see cref="ScsiTask"/> (as FullFeaturePhase does) and building
/// the Data-In header that carries the status, with its CRC32C header digest (as PduEncoder
/// does). The whole fabric path, sockets included, is what bench/run.sh measures.
/// </summary>
[MemoryDiagnoser]
public class PduBenchmarks
{
    private readonly byte[] command = new byte[Bhs.Length];
    private readonly byte[] dataIn = new byte[Bhs.Length + 4];
    private readonly ScsiTask task = new();
    private uint statSN;

    [GlobalSetup]
    public void Setup()
    {
        // Built by hand (the fabric only parses SCSI Commands): RFC 7143 11.3 offsets.
        var h = command.AsSpan();
        h[0] = (byte)Opcode.ScsiCommand;
        h[1] = 0x80 | 0x40 | 1; // F, R, SIMPLE
        h[9] = 0;               // LUN 0
        BinaryPrimitives.WriteUInt32BigEndian(h[16..], 0x1234); // ITT
        BinaryPrimitives.WriteUInt32BigEndian(h[20..], 4096);   // EDTL
        BinaryPrimitives.WriteUInt32BigEndian(h[24..], 77);     // CmdSN
        Cdbs.Read10(1024, 8).CopyTo(h[32..]);
    }

    [Benchmark]
    public long ParseScsiCommand()
    {
        ReadOnlySpan<byte> h = command;
        var opcode = Bhs.Opcode(h);
        var read = Bhs.ScsiCommand.Read(h);
        var write = Bhs.ScsiCommand.Write(h);
        var edtl = Bhs.ScsiCommand.ExpectedDataTransferLength(h);
        var itt = Bhs.InitiatorTaskTag(h);
        var cmdSN = Bhs.CmdSN(h);
        task.Lun = ScsiTarget.DecodeLun(Bhs.Lun(h));
        task.Tag = itt;
        task.Attribute = Bhs.ScsiCommand.Attribute(h) switch { 2 => TaskAttribute.Ordered, 3 => TaskAttribute.HeadOfQueue, _ => TaskAttribute.Simple };
        task.ExpectedDataInLength = read ? (int)edtl : 0;
        task.SetCdb(Bhs.ScsiCommand.Cdb(h));
        var spdtl = write ? TransferLength.DataOutBytes(task.CdbSpan, 512) ?? 0 : 0;
        return (long)opcode + cmdSN + spdtl + Bhs.DataSegmentLength(h) + Bhs.TotalAhsLength(h);
    }

    [Benchmark]
    public uint BuildDataInWithStatus()
    {
        var h = dataIn.AsSpan(0, Bhs.Length);
        h.Clear();
        Bhs.PutOpcode(h, Opcode.DataIn);
        Bhs.PutFlags(h, Bhs.FinalFlag | Bhs.DataIn.StatusFlag);
        Bhs.DataIn.PutStatus(h, 0); // GOOD
        Bhs.PutDataSegmentLength(h, 4096);
        Bhs.PutLunField(h, 0);
        Bhs.PutInitiatorTaskTag(h, 0x1234);
        Bhs.PutTargetTransferTag(h, Bhs.ReservedTag);
        Bhs.PutStatSN(h, statSN++);
        Bhs.PutWindow(h, new CmdSNWindow(100, 227));
        Bhs.DataIn.PutDataSN(h, 0);
        Bhs.DataIn.PutBufferOffset(h, 0);
        Bhs.DataIn.PutResidualCount(h, 0);
        var crc = Crc32C.Compute(h);
        BinaryPrimitives.WriteUInt32LittleEndian(dataIn.AsSpan(Bhs.Length), crc);
        return crc;
    }
}
