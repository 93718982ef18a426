using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace HandlerRuntime.Iscsi.Tests;

/// <summary>
/// A deliberately small iSCSI initiator written for the tests, independent of the
/// target's code (its own PDU layout and CRC32C table), so the tests can do what libiscsi
/// cannot: data digests, multiple connections per session, malformed PDUs, silence.
/// One command at a time; it answers the target's NOP-In pings.
/// </summary>
public sealed class RawInitiator : IAsyncDisposable
{
    private readonly TcpClient client;
    private readonly NetworkStream stream;
    private uint cmdSN = 1;
    private uint expStatSN;
    private uint itt = 0x100;

    private RawInitiator(TcpClient client)
    {
        this.client = client;
        stream = client.GetStream();
    }

    public bool HeaderDigest { get; private set; }
    public bool DataDigest { get; private set; }
    public ushort Tsih { get; private set; }
    public uint MaxCmdSN { get; private set; }
    public uint ExpCmdSN { get; private set; }
    public Dictionary<string, string> Negotiated { get; } = new();
    public int TargetMaxRecv { get; private set; } = 8192;
    public int FirstBurst { get; private set; } = 65536;
    public bool InitialR2T { get; private set; } = true;
    public bool ImmediateData { get; private set; } = true;
    public int NopInsAnswered { get; private set; }

    /// <summary>Connects; <paramref name="socketBufferBytes"/> fixes this side's socket buffers (the kernel then does not grow them).</summary>
    public static async Task<RawInitiator> ConnectAsync(int port, int socketBufferBytes = 0)
    {
        var c = new TcpClient { NoDelay = true };
        if (socketBufferBytes > 0)
            (c.ReceiveBufferSize, c.SendBufferSize) = (socketBufferBytes, socketBufferBytes);
        await c.ConnectAsync("127.0.0.1", port);
        return new RawInitiator(c);
    }

    public Stream Stream => stream;

    /// <summary>Two connections of one session share CmdSN: continue numbering from <paramref name="other"/>.</summary>
    public void ContinueCmdSN(RawInitiator other)
    {
        cmdSN = other.cmdSN;
        itt = other.itt + 0x1000;
    }

    /// <summary>Logs in with one operational-stage request; returns the login status (class &lt;&lt; 8 | detail).</summary>
    public async Task<int> LoginAsync(string initiator, string? target, bool headerDigest = false, bool dataDigest = false,
        ulong isid = 0x400000000001, ushort tsih = 0, ushort cid = 0, IEnumerable<(string, string)>? extra = null)
    {
        var keys = new List<(string, string)> { ("InitiatorName", initiator), ("SessionType", target is null ? "Discovery" : "Normal") };
        if (target is not null)
            keys.Add(("TargetName", target));
        keys.Add(("HeaderDigest", headerDigest ? "CRC32C" : "None"));
        keys.Add(("DataDigest", dataDigest ? "CRC32C" : "None"));
        keys.Add(("MaxRecvDataSegmentLength", "65536"));
        if (tsih == 0 && target is not null)
        {
            keys.Add(("InitialR2T", "No"));
            keys.Add(("ImmediateData", "Yes"));
            keys.Add(("MaxBurstLength", "262144"));
            keys.Add(("FirstBurstLength", "65536"));
            keys.Add(("MaxConnections", "2"));
            keys.Add(("MaxOutstandingR2T", "1"));
            keys.Add(("ErrorRecoveryLevel", "0"));
        }
        keys.AddRange(extra ?? []);
        var h = new byte[48];
        h[0] = 0x43; // Login Request, immediate
        h[1] = 0x80 | (1 << 2) | 3; // T, CSG=operational, NSG=full feature
        for (var i = 0; i < 6; i++)
            h[8 + i] = (byte)(isid >> (40 - 8 * i));
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(14), tsih);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(16), itt++);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(20), cid);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(24), cmdSN);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(28), expStatSN);
        var text = Text(keys);
        await SendPduAsync(h, text, digests: false);
        var (rh, rdata) = await ReceivePduAsync(digests: false);
        if ((rh[0] & 0x3F) != 0x23)
            throw new InvalidOperationException($"expected a login response, got opcode 0x{rh[0]:x2}");
        var status = rh[36] << 8 | rh[37];
        expStatSN = BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(24)) + 1;
        if (status != 0)
            return status;
        Tsih = BinaryPrimitives.ReadUInt16BigEndian(rh.AsSpan(14));
        ExpCmdSN = BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(28));
        MaxCmdSN = BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(32));
        foreach (var kv in Encoding.UTF8.GetString(rdata).Split('\0', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = kv.IndexOf('=');
            Negotiated[kv[..eq]] = kv[(eq + 1)..];
        }
        if ((rh[1] & 0x80) == 0 || (rh[1] & 3) != 3)
            throw new InvalidOperationException("the target did not move to full feature phase: " + string.Join(", ", Negotiated));
        HeaderDigest = Negotiated.GetValueOrDefault("HeaderDigest") == "CRC32C";
        DataDigest = Negotiated.GetValueOrDefault("DataDigest") == "CRC32C";
        if (Negotiated.TryGetValue("MaxRecvDataSegmentLength", out var m))
            TargetMaxRecv = int.Parse(m);
        if (Negotiated.TryGetValue("FirstBurstLength", out var f))
            FirstBurst = int.Parse(f);
        InitialR2T = Negotiated.GetValueOrDefault("InitialR2T", "Yes") == "Yes";
        ImmediateData = Negotiated.GetValueOrDefault("ImmediateData", "Yes") == "Yes";
        return 0;
    }

    public static byte[] Text(IEnumerable<(string Key, string Value)> keys)
    {
        var sb = new StringBuilder();
        foreach (var (k, v) in keys)
            sb.Append(k).Append('=').Append(v).Append('\0');
        return Encoding.UTF8.GetBytes(sb.ToString());
    }

    public sealed record Reply(byte Status, byte[] Sense, byte[] Data, byte Flags, uint Residual, int R2Ts, int DataIns)
    {
        /// <summary>Sense key, ASC and ASCQ from fixed (70h/71h) or descriptor (72h/73h) sense data; (-1, -1, -1) when there is none.</summary>
        public (int Key, int Asc, int Ascq) SenseCode => Sense.Length < 4 ? (-1, -1, -1) : (Sense[0] & 0x7F) switch
        {
            0x70 or 0x71 when Sense.Length >= 14 => (Sense[2] & 0x0F, Sense[12], Sense[13]),
            0x72 or 0x73 => (Sense[1] & 0x0F, Sense[2], Sense[3]),
            _ => (-1, -1, -1),
        };

        /// <summary>"MEDIUM ERROR 11h/00h", "BUSY" or "GOOD": what the initiator was told, for failure messages.</summary>
        public string Describe() => Status switch
        {
            0x00 => "GOOD",
            0x08 => "BUSY",
            0x18 => "RESERVATION CONFLICT",
            0x02 => SenseCode is var (key, asc, ascq) ? $"{KeyName(key)} {asc:X2}h/{ascq:X2}h" : "",
            var s => $"status {s:X2}h",
        };

        private static string KeyName(int key) => key switch
        {
            0x2 => "NOT READY",
            0x3 => "MEDIUM ERROR",
            0x4 => "HARDWARE ERROR",
            0x5 => "ILLEGAL REQUEST",
            0x6 => "UNIT ATTENTION",
            0x7 => "DATA PROTECT",
            0xB => "ABORTED COMMAND",
            0xE => "MISCOMPARE",
            -1 => "CHECK CONDITION without sense",
            _ => $"sense key {key:X}h",
        };
    }

    /// <summary>Runs one SCSI command to completion: immediate and unsolicited data as negotiated, then Data-Out for each R2T.</summary>
    public async Task<Reply> CommandAsync(byte[] cdb, byte[]? dataOut = null, int expectedIn = 0, ulong lun = 0)
    {
        var tag = itt++;
        var h = new byte[48];
        h[0] = 0x01;
        var immediate = dataOut is null || !ImmediateData ? 0 : Math.Min(dataOut.Length, Math.Min(FirstBurst, TargetMaxRecv));
        var unsolicited = dataOut is null || InitialR2T ? immediate : Math.Min(dataOut.Length, FirstBurst);
        h[1] = (byte)((unsolicited > immediate ? 0 : 0x80) | (expectedIn > 0 ? 0x40 : 0) | (dataOut is not null ? 0x20 : 0) | 1);
        BinaryPrimitives.WriteUInt64BigEndian(h.AsSpan(8), lun < 256 ? lun << 48 : (0x4000 | lun) << 48);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(16), tag);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(20), (uint)(dataOut?.Length ?? expectedIn));
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(24), cmdSN++);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(28), expStatSN);
        cdb.CopyTo(h, 32);
        await SendPduAsync(h, dataOut is null ? [] : dataOut[..immediate]);
        // Unsolicited Data-Out up to FirstBurstLength.
        uint dataSN = 0;
        for (var offset = immediate; offset < unsolicited;)
        {
            var n = Math.Min(unsolicited - offset, TargetMaxRecv);
            await SendDataOutAsync(tag, 0xFFFFFFFF, dataSN++, offset, dataOut![offset..(offset + n)], offset + n == unsolicited);
            offset += n;
        }
        var data = new MemoryStream();
        var r2ts = 0;
        var dataIns = 0;
        while (true)
        {
            var (rh, rdata) = await ReceivePduAsync();
            switch (rh[0] & 0x3F)
            {
                case 0x31: // R2T
                {
                    r2ts++;
                    var ttt = BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(20));
                    var offset = (int)BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(40));
                    var length = (int)BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(44));
                    uint sn = 0;
                    for (var at = offset; at < offset + length;)
                    {
                        var n = Math.Min(offset + length - at, TargetMaxRecv);
                        await SendDataOutAsync(tag, ttt, sn++, at, dataOut![at..(at + n)], at + n == offset + length);
                        at += n;
                    }
                    break;
                }
                case 0x25: // Data-In
                {
                    dataIns++;
                    var offset = (int)BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(40));
                    data.Position = offset;
                    data.Write(rdata);
                    if ((rh[1] & 0x01) != 0)
                    {
                        expStatSN = BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(24)) + 1;
                        return new Reply(rh[3], [], data.ToArray(), rh[1], BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(44)), r2ts, dataIns);
                    }
                    break;
                }
                case 0x21: // SCSI Response
                {
                    expStatSN = BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(24)) + 1;
                    MaxCmdSN = BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(32));
                    var sense = rdata.Length >= 2 ? rdata[2..(2 + BinaryPrimitives.ReadUInt16BigEndian(rdata))] : [];
                    return new Reply(rh[3], sense, data.ToArray(), rh[1], BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(44)), r2ts, dataIns);
                }
                default:
                    throw new InvalidOperationException($"unexpected PDU opcode 0x{rh[0]:x2} during a command");
            }
        }
    }

    private Task SendDataOutAsync(uint tag, uint ttt, uint dataSN, int offset, byte[] data, bool final)
    {
        var h = new byte[48];
        h[0] = 0x05;
        h[1] = (byte)(final ? 0x80 : 0);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(16), tag);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(20), ttt);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(28), expStatSN);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(36), dataSN);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(40), (uint)offset);
        return SendPduAsync(h, data);
    }

    /// <summary>Sends an immediate NOP-Out that asks for an answer (ITT <paramref name="tag"/>), with ping data; the NOP-In echoes it.</summary>
    public Task SendNopOutAsync(uint tag, byte[] data)
    {
        var h = new byte[48];
        h[0] = 0x40; // NOP-Out, immediate: no CmdSN taken
        h[1] = 0x80;
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(16), tag);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(20), 0xFFFFFFFF);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(24), cmdSN);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(28), expStatSN);
        return SendPduAsync(h, data);
    }

    /// <summary>Sends a Task Management request and returns its response code (RFC 7143 11.6.1).</summary>
    public async Task<int> TaskManagementAsync(int function, ulong lun = 0, uint referencedTag = 0xFFFFFFFF)
    {
        var h = new byte[48];
        h[0] = 0x42;
        h[1] = (byte)(0x80 | function);
        BinaryPrimitives.WriteUInt64BigEndian(h.AsSpan(8), lun << 48);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(16), itt++);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(20), referencedTag);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(24), cmdSN);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(28), expStatSN);
        await SendPduAsync(h, []);
        var (rh, _) = await ReceivePduAsync();
        if ((rh[0] & 0x3F) != 0x22)
            throw new InvalidOperationException($"expected a task management response, got 0x{rh[0]:x2}");
        expStatSN = BinaryPrimitives.ReadUInt32BigEndian(rh.AsSpan(24)) + 1;
        return rh[2];
    }

    /// <summary>Sends a Logout (close session) and waits for its response; returns the response code.</summary>
    public async Task<int> LogoutAsync()
    {
        var h = new byte[48];
        h[0] = 0x46;
        h[1] = 0x80;
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(16), itt++);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(24), cmdSN);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(28), expStatSN);
        await SendPduAsync(h, []);
        var (rh, _) = await ReceivePduAsync();
        if ((rh[0] & 0x3F) != 0x26)
            throw new InvalidOperationException($"expected a logout response, got 0x{rh[0]:x2}");
        return rh[2];
    }

    /// <summary>Sends a PDU; digests as negotiated unless <paramref name="digests"/> is false (login).</summary>
    public async Task SendPduAsync(byte[] header, byte[] data, bool digests = true)
    {
        header[5] = (byte)(data.Length >> 16);
        header[6] = (byte)(data.Length >> 8);
        header[7] = (byte)data.Length;
        var pdu = new MemoryStream();
        pdu.Write(header);
        if (digests && HeaderDigest)
            pdu.Write(Le(TableCrc32C(header)));
        if (data.Length > 0)
        {
            var padded = new byte[(data.Length + 3) & ~3];
            data.CopyTo(padded, 0);
            pdu.Write(padded);
            if (digests && DataDigest)
                pdu.Write(Le(TableCrc32C(padded)));
        }
        await writeLock.WaitAsync();
        try
        {
            await stream.WriteAsync(pdu.ToArray());
        }
        finally
        {
            writeLock.Release();
        }
    }

    private readonly SemaphoreSlim writeLock = new(1, 1);

    /// <summary>Receives one PDU, checking digests, and answers NOP-In pings on the way.</summary>
    public async Task<(byte[] Header, byte[] Data)> ReceivePduAsync(bool digests = true)
    {
        while (true)
        {
            var h = new byte[48];
            await stream.ReadExactlyAsync(h);
            if (digests && HeaderDigest)
            {
                var d = new byte[4];
                await stream.ReadExactlyAsync(d);
                if (BinaryPrimitives.ReadUInt32LittleEndian(d) != TableCrc32C(h))
                    throw new InvalidDataException("header digest from the target is wrong");
            }
            var length = h[5] << 16 | h[6] << 8 | h[7];
            var padded = new byte[(length + 3) & ~3];
            await stream.ReadExactlyAsync(padded);
            if (length > 0 && digests && DataDigest)
            {
                var d = new byte[4];
                await stream.ReadExactlyAsync(d);
                if (BinaryPrimitives.ReadUInt32LittleEndian(d) != TableCrc32C(padded))
                    throw new InvalidDataException("data digest from the target is wrong");
            }
            if ((h[0] & 0x3F) == 0x20 && BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16)) == 0xFFFFFFFF)
            {
                // A ping from the target: answer with the same TTT.
                var r = new byte[48];
                r[0] = 0x40;
                r[1] = 0x80;
                BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(16), 0xFFFFFFFF);
                h.AsSpan(20, 4).CopyTo(r.AsSpan(20));
                BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(24), cmdSN);
                BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(28), expStatSN);
                await SendPduAsync(r, []);
                NopInsAnswered++;
                continue;
            }
            return (h, padded[..length]);
        }
    }

    private static byte[] Le(uint v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, v);
        return b;
    }

    private static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(i =>
    {
        var c = (uint)i;
        for (var k = 0; k < 8; k++)
            c = (c & 1) != 0 ? (c >> 1) ^ 0x82F63B78 : c >> 1;
        return c;
    }).ToArray();

    /// <summary>Bitwise-table CRC32C, the reference the target's accelerated one is checked against.</summary>
    public static uint TableCrc32C(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
            crc = CrcTable[(byte)(crc ^ b)] ^ (crc >> 8);
        return ~crc;
    }

    public ValueTask DisposeAsync()
    {
        client.Dispose();
        return ValueTask.CompletedTask;
    }
}
