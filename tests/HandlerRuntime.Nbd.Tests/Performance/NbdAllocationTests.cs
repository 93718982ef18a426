using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using HandlerRuntime.Config;
using HandlerRuntime.Fabrics.Nbd;
using HandlerRuntime.Handlers.Ram;
using HandlerRuntime.Scsi;
using Microsoft.Extensions.Configuration;

namespace HandlerRuntime.Nbd.Tests.Performance;

[CollectionDefinition(nameof(AllocationCounting), DisableParallelization = true)]
public sealed class AllocationCounting;

/// <summary>
/// The NBD fabric's steady state allocates nothing per request (the style of
/// HandlerRuntime.Tests' HotPathAllocationTests, here through a real socket): an
/// <see cref="NbdFabric"/> in this process serves a ram/@ LUN, a client written to allocate
/// nothing keeps 8 requests in flight, and the process's allocation count (every thread) is
/// read around 20 000 of them. Run alone (no other test allocates meanwhile). A count, not a
/// timing: the same on any machine.
/// </summary>
[Collection(nameof(AllocationCounting))]
public sealed class NbdAllocationTests
{
    private const int Depth = 8;
    private const int Rounds = 2500; // x Depth requests, per run

    [Theory]
    [InlineData(0, 4096, false)]    // READ 4 KiB, simple replies
    [InlineData(1, 4096, false)]    // WRITE 4 KiB
    [InlineData(0, 4096, true)]     // READ 4 KiB, structured replies (one OFFSET_DATA chunk)
    [InlineData(0, 65536, true)]    // READ 64 KiB
    [InlineData(1, 65536, true)]    // WRITE 64 KiB
    public async Task Requests_through_the_NBD_fabric_allocate_nothing_in_steady_state(ushort command, int length, bool structured)
    {
        var targets = new TargetRegistry();
        var device = await new RamHandler().OpenAsync(OpenContexts.For("@", 64 << 20, 512, lunName: "ram"), CancellationToken.None);
        var lun = new ScsiLun(LunIdentity.FromName("ram", "ram"), device, readOnly: false, writeCache: true, new Serilog.LoggerConfiguration().CreateLogger());
        targets.GetOrAdd(targets.DefaultName).TryMap(0, lun);
        var port = FreePort.Next();
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["nbd:listen:0"] = $"127.0.0.1:{port}" }).Build();
        var (settings, errors) = RuntimeSettings.From(config, RepoPaths.Handlers);
        Assert.Empty(errors);
        await using var fabric = new NbdFabric(targets, new Serilog.LoggerConfiguration().CreateLogger());
        await fabric.StartAsync(settings!, CancellationToken.None);

        using var client = Connect(port, "ram", structured);
        var requests = new byte[Depth * (28 + (command == 1 ? length : 0))];
        var at = 0;
        for (var i = 0; i < Depth; i++)
        {
            var h = requests.AsSpan(at);
            BinaryPrimitives.WriteUInt32BigEndian(h, 0x25609513);
            BinaryPrimitives.WriteUInt16BigEndian(h[6..], command);
            BinaryPrimitives.WriteUInt64BigEndian(h[8..], (ulong)i);
            BinaryPrimitives.WriteUInt64BigEndian(h[16..], (ulong)(i * length));
            BinaryPrimitives.WriteUInt32BigEndian(h[24..], (uint)length);
            at += 28 + (command == 1 ? length : 0);
        }
        var replyLength = command == 1 ? 16 : structured ? 20 + 8 + length : 16 + length;
        var replies = new byte[Depth * replyLength];
        void Round()
        {
            client.Send(requests);
            var got = 0;
            while (got < replies.Length)
            {
                var n = client.Receive(replies, got, replies.Length - got, SocketFlags.None);
                if (n == 0)
                    throw new EndOfStreamException();
                got += n;
            }
        }

        for (var i = 0; i < 300; i++) // warm-up: pools fill, the JIT tiers up, the nexus's unit attention is consumed
            Round();
        for (var i = 0; i < Depth; i++) // every reply is a success for its own cookie
        {
            var magic = BinaryPrimitives.ReadUInt32BigEndian(replies.AsSpan(i * replyLength));
            Assert.Equal(structured && command == 0 ? 0x668e33efu : 0x67446698u, magic);
            Assert.Equal(0u, structured && command == 0 ? 0u : BinaryPrimitives.ReadUInt32BigEndian(replies.AsSpan(i * replyLength + 4)));
        }

        // The best of three runs: what the fabric allocates per request shows in every run, while
        // the thread pool starting a thread now and then (its Thread, its array pool's per-thread
        // arrays) shows in some.
        var best = long.MaxValue;
        for (var run = 0; run < 3 && best >= Rounds * Depth; run++)
        {
            var before = GC.GetTotalAllocatedBytes(precise: true);
            for (var i = 0; i < Rounds; i++)
                Round();
            best = Math.Min(best, GC.GetTotalAllocatedBytes(precise: true) - before);
        }

        // Less than one byte per request: any per-request object (24 bytes at least) would show.
        Assert.True(best < Rounds * Depth, $"{best} bytes allocated over {Rounds * Depth} requests ({(double)best / (Rounds * Depth):F2} per request)");
    }

    /// <summary>Fixed newstyle, optionally STRUCTURED_REPLY, then GO; synchronous and minimal.</summary>
    private static Socket Connect(int port, string export, bool structured)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveTimeout = 15000, SendTimeout = 15000 };
        s.Connect(new IPEndPoint(IPAddress.Loopback, port));
        Read(s, 18);
        s.Send(RawNbdClient.U32(3));
        if (structured)
        {
            s.Send([.. RawNbdClient.U64(RawNbdClient.OptionMagic), .. RawNbdClient.U32(RawNbdClient.OptStructuredReply), .. RawNbdClient.U32(0)]);
            Assert.Equal(RawNbdClient.RepAck, BinaryPrimitives.ReadUInt32BigEndian(Read(s, 20).AsSpan(12)));
        }
        var name = System.Text.Encoding.UTF8.GetBytes(export);
        s.Send([.. RawNbdClient.U64(RawNbdClient.OptionMagic), .. RawNbdClient.U32(RawNbdClient.OptGo), .. RawNbdClient.U32((uint)(6 + name.Length)),
            .. RawNbdClient.U32((uint)name.Length), .. name, .. RawNbdClient.U16(0)]);
        while (true)
        {
            var h = Read(s, 20);
            var type = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12));
            Read(s, (int)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16)));
            if (type == RawNbdClient.RepAck)
                return s;
            Assert.Equal(RawNbdClient.RepInfo, type);
        }
    }

    private static byte[] Read(Socket s, int count)
    {
        var b = new byte[count];
        var got = 0;
        while (got < count)
        {
            var n = s.Receive(b, got, count - got, SocketFlags.None);
            if (n == 0)
                throw new EndOfStreamException();
            got += n;
        }
        return b;
    }
}

