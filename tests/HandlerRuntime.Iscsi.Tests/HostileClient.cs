using System.Buffers.Binary;
using System.Net.Sockets;

namespace HandlerRuntime.Iscsi.Tests;

/// <summary>
/// Connections that end badly, one of each way an iSCSI connection can end: every login
/// refusal, every full-feature protocol error the target answers by closing, wrong
/// digests, data sequence faults racing the target's own delivery, task management with
/// commands in flight, and a client that vanishes mid-PDU (FIN or RST). Written from
/// RFC 7143's PDU layout, independent of the target's code. Each call opens one
/// connection, misbehaves, and closes it; nothing waits longer than a short read.
/// </summary>
public static class HostileClient
{
    public enum Kind
    {
        NonLoginPduDuringLogin,
        LoginTextTooLong,
        LoginTextMalformed,
        LoginUnsupportedVersion,
        LoginInvalidStage,
        LoginUnknownTarget,
        LoginNoSuchSession,
        HalfLoginThenClose,
        ConnectAndClose,
        CloseMidHeader,
        CloseMidData,
        OversizedSegment,
        HeaderDigestWrong,
        DataDigestWrong,
        AhsOverrun,
        RejectedPdus,
        DataOutFaultsRacingDelivery,
        TaskManagementWithCommandsInFlight,
        CmdSNOutOfWindow,
        LogoutThenMore,
    }

    // RFC 7143 opcodes (initiator side) and BHS field offsets.
    private const byte NopOut = 0x00, ScsiCommand = 0x01, TaskManagement = 0x02, LoginRequest = 0x03, TextRequest = 0x04,
        DataOut = 0x05, LogoutRequest = 0x06, Snack = 0x10, ImmediateBit = 0x40;
    private const int FlagsAt = 1, AhsLengthAt = 4, DataLengthAt = 5, LunAt = 8, IsidAt = 8, TsihAt = 14, IttAt = 16,
        EdtlOrTttAt = 20, CmdSNAt = 24, DataSNAt = 36, BufferOffsetAt = 40, CdbAt = 32;
    private const uint Reserved = 0xFFFFFFFF;

    /// <summary>Opens one connection to 127.0.0.1:<paramref name="port"/> and misbehaves as <paramref name="kind"/> says.</summary>
    public static async Task RunAsync(int port, string target, Kind kind, int seed)
    {
        var random = new Random(seed);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync("127.0.0.1", port);
        var c = new Conn(socket, random);
        try
        {
            await PlayAsync(c, target, kind);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            // The target closed first or stayed silent: outcomes under test, judged by the caller.
        }
        finally
        {
            if (random.Next(3) == 0)
                socket.LingerState = new LingerOption(true, 0); // RST instead of FIN
            socket.Close();
        }
    }

    private static async Task PlayAsync(Conn c, string target, Kind kind)
    {
        switch (kind)
        {
            case Kind.NonLoginPduDuringLogin:
                await c.SendAsync(Command(1, 1, [0x00]), []);
                break;
            case Kind.LoginTextTooLong:
            {
                var h = Login(c.Isid, 0);
                Put24(h, DataLengthAt, 0x20000); // 128 KiB of login text, announced; only part sent
                await c.SendRawAsync(h);
                await c.SendRawAsync(new byte[4096]);
                break;
            }
            case Kind.LoginTextMalformed:
                await c.SendAsync(Login(c.Isid, 0), "InitiatorName=iqn.2026-12.test:x\0novalue\0"u8.ToArray());
                break;
            case Kind.LoginUnsupportedVersion:
            {
                var h = Login(c.Isid, 0);
                h[2] = 2; h[3] = 1; // VersionMax, VersionMin
                await c.SendAsync(h, LoginText(target));
                break;
            }
            case Kind.LoginInvalidStage:
            {
                var h = Login(c.Isid, 0);
                h[FlagsAt] = 0x80 | (3 << 2) | 3; // CSG = full feature phase
                await c.SendAsync(h, LoginText(target));
                break;
            }
            case Kind.LoginUnknownTarget:
                await c.SendAsync(Login(c.Isid, 0), LoginText(target + "-nowhere"));
                break;
            case Kind.LoginNoSuchSession:
                await c.SendAsync(Login(c.Isid, tsih: (ushort)(0x8000 | c.Random.Next(0x7FFF))), LoginText(target));
                break;
            case Kind.HalfLoginThenClose:
            {
                var h = Login(c.Isid, 0);
                h[FlagsAt] = 0; // security stage, no transit: the target waits for more
                await c.SendAsync(h, RawInitiator.Text([("InitiatorName", c.Initiator), ("TargetName", target), ("AuthMethod", "None")]));
                await c.DrainAsync();
                break;
            }
            case Kind.ConnectAndClose:
                break;
            case Kind.CloseMidHeader:
                await c.SendRawAsync(Login(c.Isid, 0).AsMemory(0, 1 + c.Random.Next(46)));
                break;
            case Kind.CloseMidData:
            {
                await c.LoginAsync(target, digests: false);
                var h = Command(1, c.CmdSN++, Cdbs.Write10(0, 8), write: true, edtl: 4096);
                Put24(h, DataLengthAt, 4096);
                await c.SendRawAsync(h);
                await c.SendRawAsync(new byte[1 + c.Random.Next(4000)]);
                break;
            }
            case Kind.OversizedSegment:
                await c.LoginAsync(target, digests: false);
                await c.SendRawAsync(WithLength(Nop(1, c.CmdSN++), 0x7FFFFF));
                await c.DrainAsync();
                break;
            case Kind.HeaderDigestWrong:
                await c.LoginAsync(target, digests: true);
                await c.SendAsync(Command(1, c.CmdSN++, Cdbs.Read10(0, 1), read: true, edtl: 512), [], corruptHeaderDigest: true);
                await c.DrainAsync();
                break;
            case Kind.DataDigestWrong:
                await c.LoginAsync(target, digests: true);
                await c.SendAsync(Command(1, c.CmdSN++, Cdbs.Write10(0, 1), write: true, edtl: 512), new byte[512], corruptDataDigest: true);
                await c.DrainAsync();
                break;
            case Kind.AhsOverrun:
            {
                await c.LoginAsync(target, digests: false);
                var h = Command(1, c.CmdSN++, Cdbs.Read10(0, 1), read: true, edtl: 512);
                h[AhsLengthAt] = 1; // one word of AHS whose own length says 60 bytes
                var ahs = new byte[4];
                BinaryPrimitives.WriteUInt16BigEndian(ahs, 60);
                ahs[2] = 1;
                await c.SendRawAsync(h.Concat(ahs).ToArray());
                await c.DrainAsync();
                break;
            }
            case Kind.RejectedPdus:
                // Each is answered with a Reject and the connection lives on, until the client leaves.
                await c.LoginAsync(target, digests: false);
                await c.SendAsync(Header(Snack, 0x80, itt: 7), []);
                await c.SendAsync(Header(0x1C, 0x80, itt: 8), []); // an opcode no initiator sends
                await c.SendAsync(Login(c.Isid, 0), LoginText(target)); // login in full feature phase
                await c.SendAsync(Command(9, c.CmdSN++, Cdbs.Read10(0, 1), read: true, edtl: 512, final: false), []);
                await c.SendAsync(Command(10, c.CmdSN++, Cdbs.Inquiry(), read: false, edtl: 0), new byte[16]); // data on a non-write
                await c.DrainAsync();
                break;
            case Kind.DataOutFaultsRacingDelivery:
            {
                // A command whose data is complete may be delivered by the target's pump on
                // another thread while the reader judges a bad Data-Out for it; each round puts
                // a command that leaves the network thread (TEST UNIT READY) ahead of such a write.
                await c.LoginAsync(target, digests: false);
                uint itt = 0x100;
                for (var round = 0; round < 24; round++)
                {
                    await c.SendAsync(Command(itt++, c.CmdSN++, Cdbs.TestUnitReady()), []);
                    var write = itt++;
                    await c.SendAsync(Command(write, c.CmdSN++, Cdbs.Write10((uint)round * 8, 1), write: true, edtl: 512), new byte[512]);
                    var fault = c.Random.Next(3);
                    await c.SendAsync(DataOutPdu(write, ttt: fault == 0 ? (uint)c.Random.Next() : Reserved,
                        dataSN: fault == 1 ? 5u : 0u, offset: fault == 2 ? 4096u : 0u, final: true), new byte[512]);
                }
                await c.DrainAsync();
                break;
            }
            case Kind.TaskManagementWithCommandsInFlight:
            {
                await c.LoginAsync(target, digests: false);
                uint itt = 0x200;
                for (var i = 0; i < 6; i++)
                    await c.SendAsync(Command(itt++, c.CmdSN++, Cdbs.Write10((uint)i * 8, 8), write: true, edtl: 4096), new byte[512]); // waits for R2T data
                var function = c.Random.Next(4) switch { 0 => 1, 1 => 2, 2 => 5, _ => 6 }; // ABORT TASK, ABORT TASK SET, LU RESET, WARM RESET
                var tmf = Header(TaskManagement | ImmediateBit, (byte)(0x80 | function), itt: itt++);
                BinaryPrimitives.WriteUInt32BigEndian(tmf.AsSpan(EdtlOrTttAt), 0x200);
                BinaryPrimitives.WriteUInt32BigEndian(tmf.AsSpan(CmdSNAt), c.CmdSN);
                await c.SendAsync(tmf, []);
                await c.SendAsync(DataOutPdu(0x201, Reserved, 0, 512, final: true), new byte[512]); // late data for an aborted task
                await c.DrainAsync();
                break;
            }
            case Kind.CmdSNOutOfWindow:
            {
                await c.LoginAsync(target, digests: false);
                uint itt = 0x300;
                await c.SendAsync(Command(itt++, c.CmdSN + 3, Cdbs.Read10(0, 1), read: true, edtl: 512), []);    // held for a gap
                await c.SendAsync(Command(itt++, c.CmdSN + 100000, Cdbs.Read10(0, 1), read: true, edtl: 512), []); // beyond MaxCmdSN
                await c.SendAsync(Command(itt++, c.CmdSN - 50, Cdbs.Read10(0, 1), read: true, edtl: 512), []);   // a stale duplicate
                await c.SendAsync(Command(itt++, c.CmdSN + 5, Cdbs.Write10(0, 8), write: true, edtl: 4096), new byte[512]); // held and wanting R2T
                await c.DrainAsync();
                break;
            }
            case Kind.LogoutThenMore:
            {
                await c.LoginAsync(target, digests: false);
                var logout = Header(LogoutRequest | ImmediateBit, 0x80, itt: 0x400);
                BinaryPrimitives.WriteUInt32BigEndian(logout.AsSpan(CmdSNAt), c.CmdSN);
                await c.SendAsync(logout, []);
                await c.SendAsync(Command(0x401, c.CmdSN++, Cdbs.Read10(0, 1), read: true, edtl: 512), []);
                await c.SendAsync(Header(TextRequest, 0x80, itt: 0x402), RawInitiator.Text([("SendTargets", "All")]));
                await c.DrainAsync();
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(kind));
        }
    }

    // ---- PDUs ----

    private static byte[] Header(int opcode, byte flags, uint itt)
    {
        var h = new byte[48];
        h[0] = (byte)opcode;
        h[FlagsAt] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(IttAt), itt);
        return h;
    }

    private static byte[] Login(ulong isid, ushort tsih)
    {
        var h = Header(LoginRequest | ImmediateBit, 0x80 | (1 << 2) | 3, itt: 1); // T, operational -> full feature
        for (var i = 0; i < 6; i++)
            h[IsidAt + i] = (byte)(isid >> (40 - 8 * i));
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(TsihAt), tsih);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(CmdSNAt), 1);
        return h;
    }

    private static byte[] LoginText(string target, bool digests = false, string initiator = "iqn.2026-12.org.handler-runtime.test:hostile") => RawInitiator.Text([
        ("InitiatorName", initiator), ("TargetName", target), ("SessionType", "Normal"),
        ("HeaderDigest", digests ? "CRC32C" : "None"), ("DataDigest", digests ? "CRC32C" : "None"),
        ("InitialR2T", "No"), ("ImmediateData", "Yes"), ("MaxOutstandingR2T", "1"), ("MaxRecvDataSegmentLength", "65536")]);

    private static byte[] Command(uint itt, uint cmdSN, byte[] cdb, bool read = false, bool write = false, int edtl = 0, bool final = true)
    {
        var h = Header(ScsiCommand, (byte)((final ? 0x80 : 0) | (read ? 0x40 : 0) | (write ? 0x20 : 0) | 1), itt); // SIMPLE
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(EdtlOrTttAt), (uint)edtl);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(CmdSNAt), cmdSN);
        cdb.CopyTo(h, CdbAt);
        return h;
    }

    private static byte[] Nop(uint itt, uint cmdSN)
    {
        var h = Header(NopOut | ImmediateBit, 0x80, itt);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(EdtlOrTttAt), Reserved);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(CmdSNAt), cmdSN);
        return h;
    }

    private static byte[] DataOutPdu(uint itt, uint ttt, uint dataSN, uint offset, bool final)
    {
        var h = Header(DataOut, (byte)(final ? 0x80 : 0), itt);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(EdtlOrTttAt), ttt);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(DataSNAt), dataSN);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(BufferOffsetAt), offset);
        return h;
    }

    private static byte[] WithLength(byte[] header, int length)
    {
        Put24(header, DataLengthAt, length);
        return header;
    }

    private static void Put24(byte[] b, int at, int value)
    {
        b[at] = (byte)(value >> 16);
        b[at + 1] = (byte)(value >> 8);
        b[at + 2] = (byte)value;
    }

    /// <summary>One hostile connection's socket and what it negotiated.</summary>
    private sealed class Conn(Socket socket, Random random)
    {
        private readonly byte[] sink = new byte[64 * 1024];
        private bool headerDigest, dataDigest;

        public Random Random { get; } = random;
        public ulong Isid { get; } = 0x400000000000UL | (ulong)random.NextInt64(1L << 40);
        public string Initiator => $"iqn.2026-12.org.handler-runtime.test:hostile-{Isid & 0xFF}";
        public uint CmdSN { get; set; } = 1;

        public async Task LoginAsync(string target, bool digests)
        {
            await SendAsync(Login(Isid, 0), LoginText(target, digests, Initiator));
            // The login response: its header, and enough of its text; the digests begin after it.
            var h = new byte[48];
            await ReadExactAsync(h);
            var length = h[DataLengthAt] << 16 | h[DataLengthAt + 1] << 8 | h[DataLengthAt + 2];
            await ReadExactAsync(new byte[(length + 3) & ~3]);
            if ((h[0] & 0x3F) != 0x23 || h[36] != 0)
                throw new SocketException((int)SocketError.ConnectionRefused); // refused (e.g. after a cold reset elsewhere): end this one
            CmdSN = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(28));
            headerDigest = dataDigest = digests;
        }

        public Task SendAsync(byte[] header, byte[] data, bool corruptHeaderDigest = false, bool corruptDataDigest = false)
        {
            Put24(header, DataLengthAt, data.Length);
            var pdu = new List<byte>(header);
            if (headerDigest)
                pdu.AddRange(Le(RawInitiator.TableCrc32C(header) ^ (corruptHeaderDigest ? 1u : 0u)));
            if (data.Length > 0)
            {
                var padded = new byte[(data.Length + 3) & ~3];
                data.CopyTo(padded, 0);
                pdu.AddRange(padded);
                if (dataDigest)
                    pdu.AddRange(Le(RawInitiator.TableCrc32C(padded) ^ (corruptDataDigest ? 1u : 0u)));
            }
            return SendRawAsync(pdu.ToArray());
        }

        public async Task SendRawAsync(ReadOnlyMemory<byte> bytes)
        {
            while (!bytes.IsEmpty)
            {
                var n = await socket.SendAsync(bytes, SocketFlags.None);
                bytes = bytes[n..];
            }
        }

        /// <summary>Reads what the target sent for a moment, so its responses and Rejects are really written.</summary>
        public async Task DrainAsync()
        {
            using var quiet = new CancellationTokenSource(TimeSpan.FromMilliseconds(20 + Random.Next(30)));
            try
            {
                while (await socket.ReceiveAsync(sink, SocketFlags.None, quiet.Token) > 0)
                {
                }
            }
            catch (OperationCanceledException)
            {
            }
        }

        private async Task ReadExactAsync(byte[] buffer)
        {
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            for (var at = 0; at < buffer.Length;)
            {
                var n = await socket.ReceiveAsync(buffer.AsMemory(at), SocketFlags.None, limit.Token);
                if (n == 0)
                    throw new SocketException((int)SocketError.ConnectionReset);
                at += n;
            }
        }

        private static byte[] Le(uint v)
        {
            var b = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(b, v);
            return b;
        }
    }
}
