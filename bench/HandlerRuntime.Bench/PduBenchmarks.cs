using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using HandlerRuntime.Fabrics.Iscsi.Protocol;
using HandlerRuntime.TestSupport;
using HandlerRuntime.Scsi;

namespace HandlerRuntime.Bench;

/// <summary>
/// The per-PDU field work of the iSCSI fabric with its own helpers: parsing a SCSI Command
/// BHS into a pooled <see cref="ScsiTask"/> (as FullFeaturePhase does) and building the
/// Data-In header that carries the status, with its CRC32C header digest (as PduSender does).
/// The whole fabric path, sockets included, is what bench/run.sh measures.
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
        var h = command.AsSpan();
        h[0] = (byte)Opcode.ScsiCommand;
        h[1] = 0x80 | 0x40 | 1; // F, R, SIMPLE
        h[9] = 0;               // LUN 0
        Bhs.Put32(h, 16, 0x1234);
        Bhs.Put32(h, 20, 4096);
        Bhs.Put32(h, 24, 77);
        Cdbs.Read10(1024, 8).CopyTo(h[32..]);
    }

    [Benchmark]
    public long ParseScsiCommand()
    {
        ReadOnlySpan<byte> h = command;
        var opcode = Bhs.Opcode(h);
        var read = (h[1] & 0x40) != 0;
        var write = (h[1] & 0x20) != 0;
        var edtl = Bhs.U32(h, 20);
        var itt = Bhs.InitiatorTaskTag(h);
        var cmdSN = Bhs.U32(h, 24);
        task.Lun = ScsiTarget.DecodeLun(h.Slice(8, 8));
        task.Tag = itt;
        task.Attribute = (h[1] & 7) switch { 2 => TaskAttribute.Ordered, 3 => TaskAttribute.HeadOfQueue, _ => TaskAttribute.Simple };
        task.ExpectedDataInLength = read ? (int)edtl : 0;
        task.SetCdb(h.Slice(32, 16));
        var spdtl = write ? TransferLength.DataOutBytes(task.CdbSpan, 512) ?? 0 : 0;
        return (long)opcode + cmdSN + spdtl + Bhs.DataSegmentLength(h) + Bhs.TotalAhsLength(h);
    }

    [Benchmark]
    public uint BuildDataInWithStatus()
    {
        var h = dataIn.AsSpan(0, Bhs.Length);
        h.Clear();
        h[0] = (byte)Opcode.DataIn;
        h[1] = 0x80 | 0x01;
        h[3] = 0; // GOOD
        Bhs.PutDataSegmentLength(h, 4096);
        BinaryPrimitives.WriteUInt64BigEndian(h[8..], 0);
        Bhs.Put32(h, 16, 0x1234);
        Bhs.Put32(h, 20, Bhs.ReservedTag);
        Bhs.Put32(h, 24, statSN++);
        Bhs.Put32(h, 28, 100);
        Bhs.Put32(h, 32, 227);
        Bhs.Put32(h, 36, 0);
        Bhs.Put32(h, 40, 0);
        Bhs.Put32(h, 44, 0);
        var crc = Crc32C.Compute(h);
        BinaryPrimitives.WriteUInt32LittleEndian(dataIn.AsSpan(Bhs.Length), crc);
        return crc;
    }
}
