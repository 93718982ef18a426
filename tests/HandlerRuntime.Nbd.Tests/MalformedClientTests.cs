using System.Text.Json.Nodes;
using static HandlerRuntime.Nbd.Tests.RawNbdClient;

namespace HandlerRuntime.Nbd.Tests;

/// <summary>
/// Clients that break the protocol: each ends its own connection only (or gets the error
/// the protocol prescribes and goes on), the daemon keeps serving, a clean client works
/// afterwards and the connection count returns to zero.
/// </summary>
public sealed class MalformedClientTests
{
    private static Task<HrtDaemon> StartAsync(Action<JsonObject>? nbd = null)
        => NbdKit.StartAsync([new("disk", "ram/@", "64M"), new("ro", "ram/@", "16M", ReadOnly: true)], nbd);

    private static async Task AssertStillServesAsync(HrtDaemon d)
    {
        Assert.False(d.HasExited, "the daemon died:\n" + d.Output);
        Assert.Equal(64L << 20, (long)(await NbdKit.InfoAsync(d.NbdUrl("disk")))["export-size"]!);
        await NbdKit.WaitForSessionsAsync(d, 0, TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task Broken_handshakes_end_their_connection_and_nothing_else()
    {
        await using var d = await StartAsync(nbd => nbd["handshakeTimeoutSeconds"] = 2);
        var port = d.NbdPort;

        await using (var c = await RawNbdClient.ConnectAsync(port)) // a client flag the server did not offer
        {
            await c.GreetingAsync();
            await c.WriteAsync(U32(0x8000_0001));
            Assert.True(await c.ClosedByServerAsync());
        }
        await using (var c = await RawNbdClient.HandshakeAsync(port)) // an option without IHAVEOPT
        {
            await c.OptionAsync(OptList, [], magic: 0x1122334455667788);
            Assert.True(await c.ClosedByServerAsync());
        }
        await using (var c = await RawNbdClient.HandshakeAsync(port)) // an option length no server should read
        {
            await c.WriteAsync(U64(OptionMagic), U32(OptInfo), U32(0x4000_0000));
            Assert.True(await c.ClosedByServerAsync());
        }
        await using (var c = await RawNbdClient.HandshakeAsync(port)) // EXPORT_NAME of nothing: no way to refuse but to close
        {
            await c.OptionAsync(OptExportName, "nothing-here"u8.ToArray());
            Assert.True(await c.ClosedByServerAsync());
        }
        await using (var c = await RawNbdClient.HandshakeAsync(port)) // more options than allowed without choosing
        {
            var closed = false;
            for (var i = 0; i < 40 && !closed; i++)
            {
                try
                {
                    await c.OptionAsync(0x4242, []);
                    Assert.Equal(ErrUnsup, (await c.OptionReplyAsync()).Type);
                }
                catch (Exception e) when (e is EndOfStreamException or IOException or System.Net.Sockets.SocketException)
                {
                    closed = true;
                    Assert.True(i >= 32, $"closed after {i} options");
                }
            }
            Assert.True(closed || await c.ClosedByServerAsync(), "40 options were all answered");
        }
        await using (var c = await RawNbdClient.HandshakeAsync(port)) // silence: the handshake timeout
        {
            var started = DateTime.UtcNow;
            Assert.True(await c.ClosedByServerAsync(TimeSpan.FromSeconds(10)));
            Assert.InRange((DateTime.UtcNow - started).TotalSeconds, 1, 8);
        }
        await using (var c = await RawNbdClient.ConnectAsync(port)) // gone after the greeting
            await c.GreetingAsync();
        await d.WaitForOutputAsync(o => o.Contains("negotiation took longer than 2 s (nbd.handshakeTimeoutSeconds)"), TimeSpan.FromSeconds(10), "the timeout");
        Assert.Contains("client flags 0x80000001 set bits this server did not offer", d.Output);
        Assert.Contains("not IHAVEOPT", d.Output);
        await AssertStillServesAsync(d);
    }

    [Fact]
    public async Task Garbage_options_get_the_errors_the_protocol_prescribes_and_negotiation_goes_on()
    {
        await using var d = await StartAsync();
        await using var c = await RawNbdClient.HandshakeAsync(d.NbdPort);
        async Task<uint> Ask(uint option, byte[] data)
        {
            await c.OptionAsync(option, data);
            var (echo, type, _) = await c.OptionReplyAsync();
            Assert.Equal(option, echo);
            return type;
        }
        Assert.Equal(ErrUnsup, await Ask(0x1234, "whatever"u8.ToArray()));           // unknown: skipped by length
        Assert.Equal(ErrUnsup, await Ask(OptPeek, []));                            // withdrawn
        Assert.Equal(ErrInvalid, await Ask(OptList, [1, 2, 3]));                  // LIST carries no data
        Assert.Equal(ErrInvalid, await Ask(OptInfo, [0, 0, 0, 9, (byte)'d', 0, 0])); // name length beyond the data
        Assert.Equal(ErrInvalid, await Ask(OptSetMeta, [0, 0, 0, 0, 0, 0, 0, 0]));   // meta contexts before structured replies
        Assert.Equal(ErrInvalid, await Ask(OptInfo, [0, 0, 0, 2, 0xC3, 0x28, 0, 0])); // a name that is not UTF-8
        Assert.Equal(ErrUnknown, await Ask(OptInfo, [0, 0, 0, 2, (byte)'n', (byte)'o', 0, 0]));
        Assert.Equal(RepAck, await Ask(OptStructuredReply, []));
        Assert.Equal(ErrInvalid, await Ask(OptStructuredReply, []));               // a repeat, as nbdkit answers it
        Assert.Equal(ErrPolicy, await Ask(OptStartTls, []));                       // no TLS configured
        var (size, flags) = await c.GoAsync("disk");
        Assert.Equal(64UL << 20, size);
        Assert.NotEqual(0, flags & 0x80); // DF: structured replies are on
        await c.RequestAsync(CmdFlush, 7, 0, 0);
        var (error, cookie) = await c.SimpleReplyAsync();
        Assert.Equal((22u, 7UL), (error, cookie)); // ram/@ offers no FLUSH: EINVAL, in a simple reply
    }

    [Fact]
    public async Task Broken_requests_are_refused_or_end_the_connection_and_a_refused_WRITE_payload_is_read_past()
    {
        await using var d = await StartAsync();
        var port = d.NbdPort;
        await using (var c = await RawNbdClient.HandshakeAsync(port))
        {
            await c.GoAsync("ro");
            // A WRITE to a read-only export: EPERM, and its payload is consumed, so the READ right behind it is understood.
            var payload = new byte[1 << 20];
            await c.RequestAsync(CmdWrite, 1, 0, (uint)payload.Length, payload: payload);
            await c.RequestAsync(CmdRead, 2, 0, 512);
            Assert.Equal((1u, 1UL), await c.SimpleReplyAsync());
            Assert.Equal((0u, 2UL), await c.SimpleReplyAsync());
            Assert.Equal(512, (await c.ReadAsync(512)).Length);
        }
        await using (var c = await RawNbdClient.HandshakeAsync(port))
        {
            await c.GoAsync("disk");
            // Over the 32 MiB maximum payload: ENOMEM (as nbdkit past its limit), payload read past too.
            var big = new byte[40 << 20];
            await c.RequestAsync(CmdWrite, 3, 0, (uint)big.Length, payload: big);
            await c.RequestAsync(99, 4, 0, 0);              // an unknown command
            await c.RequestAsync(CmdRead, 5, 0, 512, flags: 0x8000); // an unknown flag
            await c.RequestAsync(CmdRead, 6, 100, 512);     // unaligned
            Assert.Equal((12u, 3UL), await c.SimpleReplyAsync());
            Assert.Equal((22u, 4UL), await c.SimpleReplyAsync());
            Assert.Equal((22u, 5UL), await c.SimpleReplyAsync());
            Assert.Equal((22u, 6UL), await c.SimpleReplyAsync());
            // DISC with reads outstanding: every reply comes, then the server closes.
            for (ulong i = 10; i < 20; i++)
                await c.RequestAsync(CmdRead, i, i * 4096, 4096);
            await c.RequestAsync(CmdDisc, 99, 0, 0);
            var seen = new HashSet<ulong>();
            for (var i = 0; i < 10; i++)
            {
                var (error, cookie) = await c.SimpleReplyAsync();
                Assert.Equal(0u, error);
                seen.Add(cookie);
                await c.ReadAsync(4096);
            }
            Assert.Equal(10, seen.Count);
            Assert.True(await c.ClosedByServerAsync());
        }
        await using (var c = await RawNbdClient.HandshakeAsync(port)) // bad request magic: hard disconnect
        {
            await c.GoAsync("disk");
            await c.RequestAsync(CmdRead, 1, 0, 512, magic: 0xdeadbeef);
            Assert.True(await c.ClosedByServerAsync());
        }
        await using (var c = await RawNbdClient.HandshakeAsync(port)) // a WRITE too large to read past
        {
            await c.GoAsync("disk");
            await c.RequestAsync(CmdWrite, 1, 0, 0xFFFF_FE00);
            Assert.True(await c.ClosedByServerAsync());
        }
        await using (var c = await RawNbdClient.HandshakeAsync(port)) // gone in the middle of a WRITE's payload
        {
            await c.GoAsync("disk");
            await c.RequestAsync(CmdWrite, 1, 0, 1 << 20, payload: new byte[300_000]);
        }
        await using (var c = await RawNbdClient.HandshakeAsync(port)) // gone in the middle of a header
        {
            await c.GoAsync("disk");
            await c.WriteAsync(U32(RequestMagic), U16(0));
        }
        await d.WaitForOutputAsync(o => o.Contains("a request starts with 0xdeadbeef") && o.Contains("a refused WRITE of 4294966784 bytes is too large to read past"),
            TimeSpan.FromSeconds(10), "both protocol errors in the log");
        await AssertStillServesAsync(d);
    }

    [Fact]
    public async Task Connections_over_nbd_maxConnections_are_closed_at_once()
    {
        await using var d = await StartAsync(nbd => nbd["maxConnections"] = 2);
        await using var a = await RawNbdClient.HandshakeAsync(d.NbdPort);
        await using var b = await RawNbdClient.HandshakeAsync(d.NbdPort);
        await using (var c = await RawNbdClient.ConnectAsync(d.NbdPort))
            Assert.True(await c.ClosedByServerAsync());
        await d.WaitForOutputAsync(o => o.Contains("2 connections already (nbd.maxConnections)"), TimeSpan.FromSeconds(10), "the refusal");
        await a.DisposeAsync();
        await b.DisposeAsync();
        await NbdKit.WaitForSessionsAsync(d, 0, TimeSpan.FromSeconds(20));
        await AssertStillServesAsync(d);
    }
}
