using System.Text;
using Microsoft.Extensions.Configuration;
using HandlerRuntime.Fabrics.Iscsi;
using HandlerRuntime.Fabrics.Iscsi.Login;
using HandlerRuntime.Fabrics.Iscsi.Protocol;
using HandlerRuntime.Scsi;

namespace HandlerRuntime.Iscsi.Tests;

/// <summary>The fabric's pure parts: CRC32C, text keys, negotiation, transfer lengths.</summary>
public sealed class ProtocolUnitTests
{
    [Fact]
    public void Crc32C_matches_the_RFC_3720_B4_vectors()
    {
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));
        Assert.Equal(0x62A8AB43u, Crc32C.Compute(Enumerable.Repeat((byte)0xFF, 32).ToArray()));
        Assert.Equal(0x46DD794Eu, Crc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray()));
        Assert.Equal(0x113FDB5Cu, Crc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)(31 - i)).ToArray()));
    }

    [Fact]
    public void Crc32C_equals_an_independent_table_at_every_length_and_alignment_whole_and_in_pieces()
    {
        var data = new byte[1000];
        new Random(7).NextBytes(data);
        for (var start = 0; start < 9; start++)
            for (var length = 0; length < 300; length += 7)
            {
                var span = data.AsSpan(start, length);
                Assert.Equal(RawInitiator.TableCrc32C(span), Crc32C.Compute(span));
                var cut = length / 3; // a running CRC continued across an odd split (data digest over data and padding)
                Assert.Equal(RawInitiator.TableCrc32C(span), ~Crc32C.Append(Crc32C.Append(~0u, span[..cut]), span[cut..]));
            }
    }

    [Fact]
    public void Text_keys_parse_in_order_and_refuse_duplicates()
    {
        var list = new List<KeyValuePair<string, string>>();
        Assert.True(TextKeys.TryParse(Encoding.UTF8.GetBytes("A=1\0B=x,y\0"), list, out _));
        Assert.Equal([new("A", "1"), new("B", "x,y")], list);
        Assert.False(TextKeys.TryParse(Encoding.UTF8.GetBytes("A=1\0A=2\0"), new(), out var dup));
        Assert.Contains("twice", dup);
        Assert.False(TextKeys.TryParse(Encoding.UTF8.GetBytes("novalue\0"), new(), out _));
    }

    [Fact]
    public void Negotiation_follows_RFC_7143_rules()
    {
        var options = IscsiOptions.Default with { MaxBurstLength = 131072, FirstBurstLength = 65536, HeaderDigest = ["CRC32C", "None"], DataDigest = ["None"] };
        var session = new SessionParameters();
        var connection = new ConnectionParameters();
        var n = new Negotiator(options, session, connection, leading: true);
        var reply = new List<KeyValuePair<string, string>>();
        void Ask(string k, string v) => Assert.True(n.TryAnswer(k, v, reply, discovery: false));
        Ask("HeaderDigest", "None,CRC32C");   // initiator's first acceptable choice wins
        Ask("DataDigest", "CRC32C");            // not accepted here
        Ask("MaxBurstLength", "262144");        // minimum
        Ask("FirstBurstLength", "262144");
        Ask("InitialR2T", "No");                // OR
        Ask("ImmediateData", "Yes");            // AND
        Ask("DefaultTime2Wait", "0");           // maximum
        Ask("ErrorRecoveryLevel", "2");
        Ask("MaxRecvDataSegmentLength", "16384");
        Ask("MaxOutstandingR2T", "abc");
        var answers = reply.ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.Equal("None", answers["HeaderDigest"]);
        Assert.Equal("Reject", answers["DataDigest"]);
        Assert.Equal("131072", answers["MaxBurstLength"]);
        Assert.Equal("65536", answers["FirstBurstLength"]);
        Assert.Equal("No", answers["InitialR2T"]);
        Assert.Equal("Yes", answers["ImmediateData"]);
        Assert.Equal("2", answers["DefaultTime2Wait"]);
        Assert.Equal("0", answers["ErrorRecoveryLevel"]);
        Assert.Equal(options.MaxRecvDataSegmentLength.ToString(), answers["MaxRecvDataSegmentLength"]);
        Assert.Equal("Reject", answers["MaxOutstandingR2T"]);
        Assert.False(connection.HeaderDigest);
        Assert.Equal(16384, connection.InitiatorMaxRecvDataSegmentLength);
        Assert.Equal(131072, session.MaxBurstLength);
        Assert.False(session.InitialR2T);
        Assert.False(n.TryAnswer("X-com.example.thing", "1", reply, false));

        var secondary = new Negotiator(options, session, new ConnectionParameters(), leading: false);
        var r2 = new List<KeyValuePair<string, string>>();
        Assert.True(secondary.TryAnswer("MaxBurstLength", "512", r2, false));
        Assert.Equal("Irrelevant", r2[0].Value);
        Assert.Equal(131072, session.MaxBurstLength);
    }

    [Fact]
    public void Options_are_validated_with_one_sentence_each()
    {
        var json = """{ "iscsi": { "queueDepth": 0, "firstBurstLength": 9000000, "maxBurstLength": 65536, "headerDigest": ["MD5"] } }""";
        var config = new Microsoft.Extensions.Configuration.ConfigurationBuilder().AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes(json))).Build();
        var (options, errors) = IscsiOptions.From(config.GetSection("iscsi"));
        Assert.Null(options);
        Assert.Contains(errors, e => e.StartsWith("iscsi.queueDepth:"));
        Assert.Contains(errors, e => e.StartsWith("iscsi.firstBurstLength:"));
        Assert.Contains(errors, e => e.StartsWith("iscsi.headerDigest: 'MD5'"));
    }

    [Theory]
    [InlineData("2A00000000000000080000", 512, 8 * 512)]           // WRITE(10) 8 blocks
    [InlineData("0A00000000000000", 512, 256 * 512)]              // WRITE(6) 0 = 256 blocks
    [InlineData("4100000000000000100000", 4096, 4096)]             // WRITE SAME(10): one block
    [InlineData("930100000000000000000000000000100000", 512, 0)]   // WRITE SAME(16) NDOB
    [InlineData("8900000000000000000000000004000000", 512, 4096)]  // COMPARE AND WRITE 4 blocks: twice
    [InlineData("2F00000000000000040000", 512, 0)]                 // VERIFY(10) BYTCHK 0
    [InlineData("2F02000000000000040000", 512, 2048)]              // VERIFY(10) BYTCHK 1
    [InlineData("420000000000000018000000", 512, 24)]              // UNMAP parameter list
    [InlineData("150000001800", 512, 24)]                          // MODE SELECT(6): one-byte list length
    [InlineData("5F000000000000001800", 512, 24)]                  // PERSISTENT RESERVE OUT: four bytes at 5
    [InlineData("83000000000000000000000000400000", 512, 64)]      // EXTENDED COPY: four bytes at 10
    [InlineData("48010000000000000C00", 512, 12)]                  // SANITIZE(OVERWRITE): two bytes at 7
    [InlineData("8E000000000000000000000000020000", 512, 1024)]    // WRITE AND VERIFY(16): blocks whatever BYTCHK
    [InlineData("2F06000000000000040000", 512, 512)]               // VERIFY(10) BYTCHK 3: one block
    [InlineData("160000000000", 512, 0)]                           // RESERVE(6): none
    public void Transfer_length_of_data_out_commands(string cdbHex, int blockSize, long expected)
        => Assert.Equal(expected, TransferLength.DataOutBytes(Convert.FromHexString(cdbHex), blockSize));

    [Fact]
    public void Transfer_length_is_unknown_for_commands_without_data_out()
    {
        Assert.Null(TransferLength.DataOutBytes(Convert.FromHexString("28000000000000000100"), 512));
        var cdb = Convert.FromHexString("2A000000000000000200");
        Assert.True(TransferLength.TryTruncateWrite(cdb, 512, 512));
        Assert.Equal(1, cdb[8]);
        Assert.False(TransferLength.TryTruncateWrite(cdb, 512, 200));
        Assert.Null(TransferLength.DataOutBytes(Convert.FromHexString("2A0000000000000002"), 512));   // shorter than WRITE(10)
        var orwrite = Convert.FromHexString("8B000000000000000000000000040000");
        Assert.False(TransferLength.TryTruncateWrite(orwrite, 512, 1024));                           // an atomic write is never cut short
        Assert.False(TransferLength.TryTruncateWrite(Convert.FromHexString("0A0000000800"), 512, 512)); // WRITE(6)
        var write16 = Convert.FromHexString("8A000000000000000000000000080000");
        Assert.True(TransferLength.TryTruncateWrite(write16, 4096, 8192));
        Assert.Equal(2u, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(write16.AsSpan(10)));
    }

    // Residuals (RFC 7143 11.4.5): SPDTL against EDTL per direction. O/U = 0x04/0x02 (the one
    // transfer, or the write part of a bidirectional command), o/u = 0x10/0x08 (its read part).
    // Columns: R, W, data-in produced, expected data-in, data-out the CDB asks (-1 unknown),
    // expected data-out (EDTL), then flags, Residual Count, Bidirectional Read Residual Count.
    [Theory]
    [InlineData(true, false, 4096, 4096, -1, 0, 0x00, 0u, 0u)]            // read, exact
    [InlineData(true, false, 512, 4096, -1, 0, 0x02, 3584u, 0u)]          // read, the command produced less: underflow
    [InlineData(true, false, 0, 4096, -1, 0, 0x02, 4096u, 0u)]            // read that ended in CHECK CONDITION: nothing sent
    [InlineData(true, false, 8192, 4096, -1, 0, 0x04, 4096u, 0u)]         // read, EDTL too small: overflow
    [InlineData(false, true, 0, 0, 4096, 4096, 0x00, 0u, 0u)]             // write, exact
    [InlineData(false, true, 0, 0, 8192, 4096, 0x04, 4096u, 0u)]          // write, CDB asks more than EDTL: overflow
    [InlineData(false, true, 0, 0, 2048, 4096, 0x02, 2048u, 0u)]          // write, EDTL more than the CDB asks: underflow
    [InlineData(false, true, 0, 0, 0, 512, 0x02, 512u, 0u)]               // write whose CDB transfers nothing (VERIFY BYTCHK 0)
    [InlineData(false, true, 0, 0, -1, 4096, 0x00, 0u, 0u)]               // write of a command this target cannot size: no claim
    [InlineData(false, true, 0, 0, 1L << 40, 4096, 0x04, uint.MaxValue, 0u)] // a CDB beyond 4 GiB: the count saturates
    [InlineData(false, false, 0, 0, -1, 0, 0x00, 0u, 0u)]                 // no data either way (TEST UNIT READY)
    [InlineData(false, false, 96, 0, -1, 0, 0x04, 96u, 0u)]               // data-in the initiator did not ask for (no R bit)
    [InlineData(false, true, 96, 0, -1, 4096, 0x04, 96u, 0u)]             // W only, yet data-in produced: reported as the one transfer
    [InlineData(true, true, 512, 512, 4096, 4096, 0x00, 0u, 0u)]          // bidirectional, both exact
    [InlineData(true, true, 256, 512, 4096, 4096, 0x08, 0u, 256u)]        // bidirectional, read part underflow only
    [InlineData(true, true, 1024, 512, 8192, 4096, 0x14, 4096u, 512u)]    // bidirectional, both parts overflow
    [InlineData(true, true, 1024, 512, 2048, 4096, 0x12, 2048u, 512u)]    // bidirectional, read overflow and write underflow
    [InlineData(true, true, 0, 512, -1, 4096, 0x08, 0u, 512u)]            // bidirectional, write part unknown: only the read residual
    public void Residuals_follow_RFC_7143(bool read, bool write, long dataIn, long expectedIn, long dataOut, long expectedOut,
        int flags, uint count, uint bidirectionalReadCount)
    {
        var r = Residual.Of(read, write, dataIn, expectedIn, dataOut, expectedOut);
        Assert.Equal(((ResidualFlags)flags, count, bidirectionalReadCount), (r.Flags, r.Count, r.BidirectionalReadCount));
    }

    [Fact]
    public void Residual_flags_are_the_wire_bits_of_a_SCSI_Response()
    {
        // RFC 7143 11.4.1, byte 1 (bit 0 the most significant): bit 3 o, 4 u, 5 O, 6 U.
        Assert.Equal(0x80 >> 3, (int)ResidualFlags.BidirectionalReadOverflow);
        Assert.Equal(0x80 >> 4, (int)ResidualFlags.BidirectionalReadUnderflow);
        Assert.Equal(0x80 >> 5, (int)ResidualFlags.Overflow);
        Assert.Equal(0x80 >> 6, (int)ResidualFlags.Underflow);
    }

    [Fact]
    public void Only_READ_and_WRITE_may_run_on_the_network_thread()
    {
        var inline = CommandTable.All.Where(c => (c.Flags & CommandFlags.MayRunInline) != 0).Select(c => c.Name).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(["READ(10)", "READ(12)", "READ(16)", "READ(6)", "WRITE(10)", "WRITE(12)", "WRITE(16)", "WRITE(6)"], inline);
        Assert.True(CommandTable.Find(Cdbs.Read10(0, 1)) is { } read && (read.Flags & CommandFlags.MayRunInline) != 0);
        Assert.True(CommandTable.Find(Cdbs.Write16(0, 1)) is { } write && (write.Flags & CommandFlags.MayRunInline) != 0);
    }
}
