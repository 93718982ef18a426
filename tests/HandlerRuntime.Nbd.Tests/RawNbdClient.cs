using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace HandlerRuntime.Nbd.Tests;

/// <summary>
/// A hand-written NBD client for what no well-behaved client sends: broken frames, bad magic,
/// lies about lengths, options out of place, a connection dropped mid-request. Every read has
/// a deadline, so a server that hangs fails the test instead of stalling it.
/// </summary>
public sealed class RawNbdClient : IAsyncDisposable
{
    public const ulong NbdMagic = 0x4e42444d41474943;
    public const ulong OptionMagic = 0x49484156454f5054;
    public const ulong OptionReplyMagic = 0x0003e889045565a9;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;

    public const uint OptExportName = 1, OptAbort = 2, OptList = 3, OptPeek = 4, OptStartTls = 5, OptInfo = 6, OptGo = 7, OptStructuredReply = 8,
        OptListMeta = 9, OptSetMeta = 10;
    public const uint RepAck = 1, RepServer = 2, RepInfo = 3, RepMeta = 4, ErrUnsup = 0x80000001, ErrPolicy = 0x80000002, ErrInvalid = 0x80000003, ErrUnknown = 0x80000006;
    public const ushort CmdRead = 0, CmdWrite = 1, CmdDisc = 2, CmdFlush = 3;

    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(15);
    private readonly TcpClient tcp;
    private readonly NetworkStream stream;

    private RawNbdClient(TcpClient tcp)
    {
        this.tcp = tcp;
        stream = tcp.GetStream();
    }

    public static async Task<RawNbdClient> ConnectAsync(int port)
    {
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync("127.0.0.1", port);
        return new RawNbdClient(tcp);
    }

    /// <summary>Connects, checks the greeting and answers it with fixed newstyle and no zeroes.</summary>
    public static async Task<RawNbdClient> HandshakeAsync(int port)
    {
        var c = await ConnectAsync(port);
        var flags = await c.GreetingAsync();
        Assert.Equal(3, flags); // FIXED_NEWSTYLE | NO_ZEROES, as nbdkit sends
        await c.WriteAsync(U32(3));
        return c;
    }

    public async Task<byte[]> ReadAsync(int count)
    {
        var b = new byte[count];
        using var cts = new CancellationTokenSource(Deadline);
        await stream.ReadExactlyAsync(b, cts.Token);
        return b;
    }

    public async Task WriteAsync(params byte[][] parts)
    {
        foreach (var p in parts)
            await stream.WriteAsync(p);
    }

    public async Task<ushort> GreetingAsync()
    {
        var g = await ReadAsync(18);
        Assert.Equal(NbdMagic, BinaryPrimitives.ReadUInt64BigEndian(g));
        Assert.Equal(OptionMagic, BinaryPrimitives.ReadUInt64BigEndian(g.AsSpan(8)));
        return BinaryPrimitives.ReadUInt16BigEndian(g.AsSpan(16));
    }

    public Task OptionAsync(uint option, byte[] data, ulong magic = OptionMagic)
        => WriteAsync(U64(magic), U32(option), U32((uint)data.Length), data);

    public async Task<(uint Option, uint Type, byte[] Data)> OptionReplyAsync()
    {
        var h = await ReadAsync(20);
        Assert.Equal(OptionReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(h));
        var length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16));
        return (BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(8)), BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12)), await ReadAsync((int)length));
    }

    /// <summary>GO for <paramref name="name"/>; returns the size and transmission flags of INFO_EXPORT once ACKed.</summary>
    public async Task<(ulong Size, ushort Flags)> GoAsync(string name)
    {
        var n = Encoding.UTF8.GetBytes(name);
        await OptionAsync(OptGo, [.. U32((uint)n.Length), .. n, .. U16(0)]);
        (ulong, ushort) export = default;
        while (true)
        {
            var (option, type, data) = await OptionReplyAsync();
            Assert.Equal(OptGo, option);
            if (type == RepInfo && BinaryPrimitives.ReadUInt16BigEndian(data) == 0)
                export = (BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(2)), BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(10)));
            else if (type == RepAck)
                return export;
            else if (type >= 0x80000000)
                throw new Xunit.Sdk.XunitException($"GO refused with 0x{type:x8}: {Encoding.UTF8.GetString(data)}");
        }
    }

    public Task RequestAsync(ushort type, ulong cookie, ulong offset, uint length, ushort flags = 0, byte[]? payload = null, uint magic = RequestMagic)
        => WriteAsync(U32(magic), U16(flags), U16(type), U64(cookie), U64(offset), U32(length), payload ?? []);

    /// <summary>A simple reply: error and cookie (READ data, if any, is left to the caller).</summary>
    public async Task<(uint Error, ulong Cookie)> SimpleReplyAsync()
    {
        var r = await ReadAsync(16);
        Assert.Equal(SimpleReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(r));
        return (BinaryPrimitives.ReadUInt32BigEndian(r.AsSpan(4)), BinaryPrimitives.ReadUInt64BigEndian(r.AsSpan(8)));
    }

    /// <summary>True when the server closes the connection (end of stream or reset) within the deadline.</summary>
    public async Task<bool> ClosedByServerAsync(TimeSpan? within = null)
    {
        using var cts = new CancellationTokenSource(within ?? Deadline);
        var b = new byte[4096];
        try
        {
            while (true)
            {
                var n = await stream.ReadAsync(b, cts.Token);
                if (n == 0)
                    return true;
            }
        }
        catch (IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public static byte[] U16(ushort v) { var b = new byte[2]; BinaryPrimitives.WriteUInt16BigEndian(b, v); return b; }
    public static byte[] U32(uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(b, v); return b; }
    public static byte[] U64(ulong v) { var b = new byte[8]; BinaryPrimitives.WriteUInt64BigEndian(b, v); return b; }

    public ValueTask DisposeAsync()
    {
        tcp.Dispose();
        return ValueTask.CompletedTask;
    }
}
