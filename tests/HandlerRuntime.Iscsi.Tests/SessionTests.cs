using System.Security.Cryptography;
using System.Text;

namespace HandlerRuntime.Iscsi.Tests;

/// <summary>Session-level behaviour: several connections per session, keep-alive, SendTargets in a session, logout.</summary>
public sealed class SessionTests
{
    private const string Initiator = "iqn.2026-11.org.handler-runtime:tests";

    [Fact]
    public async Task Two_connections_share_one_session_and_its_command_window()
    {
        await using var d = await Daemons.StartRamAsync("16M");
        await using var first = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0, await first.LoginAsync(Initiator, Daemons.Target, isid: 0x400000000010, cid: 1));
        Assert.Equal("2", first.Negotiated["MaxConnections"]);
        await using var second = await RawInitiator.ConnectAsync(d.Port);
        // The second login names the session by its TSIH; leading-only keys are not sent again.
        Assert.Equal(0, await second.LoginAsync(Initiator, Daemons.Target, isid: 0x400000000010, tsih: first.Tsih, cid: 2));
        Assert.Equal(first.Tsih, second.Tsih);

        var data = RandomNumberGenerator.GetBytes(64 * 512);
        await first.CommandAsync(new byte[6]); // takes the power-on unit attention
        Assert.Equal(0, (await first.CommandAsync(DataPathTests.Cdb10(0x2A, 0, 64), data)).Status);
        // The second connection shares the CmdSN space: continue from the first's.
        var read = await ReadOnSecondAsync(first, second, data.Length);
        Assert.True(read.AsSpan().SequenceEqual(data));

        var ls = await d.CliOkAsync("ls", "--json");
        Assert.Equal(1, CountOccurrences(ls, "\"initiatorPort\""));
        // A third connection is beyond the negotiated MaxConnections=2.
        await using var third = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0x0206, await third.LoginAsync(Initiator, Daemons.Target, isid: 0x400000000010, tsih: first.Tsih, cid: 3));
    }

    private static async Task<byte[]> ReadOnSecondAsync(RawInitiator first, RawInitiator second, int length)
    {
        second.ContinueCmdSN(first);
        var reply = await second.CommandAsync(DataPathTests.Cdb10(0x28, 0, (ushort)(length / 512)), expectedIn: length);
        Assert.Equal(0, reply.Status);
        first.ContinueCmdSN(second);
        return reply.Data;
    }

    private static int CountOccurrences(string text, string what)
    {
        var n = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + 1, StringComparison.Ordinal))
            n++;
        return n;
    }

    [Fact]
    public async Task An_initiator_that_stops_answering_nop_in_is_dropped()
    {
        await using var d = await Daemons.StartRamAsync(configure: c =>
        {
            Daemons.Iscsi(c)["nopInIntervalSeconds"] = 1;
            Daemons.Iscsi(c)["nopInTimeoutSeconds"] = 2;
        });
        await using var raw = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0, await raw.LoginAsync(Initiator, Daemons.Target));
        // Read the ping but never answer it.
        var header = new byte[48];
        await raw.Stream.ReadExactlyAsync(header).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0x20, header[0] & 0x3F);
        Assert.NotEqual(0xFFFFFFFFu, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(20)));
        var end = raw.Stream.ReadAsync(new byte[1]).AsTask();
        Assert.Equal(0, await end.WaitAsync(TimeSpan.FromSeconds(15)));
        Assert.Contains("no answer to NOP-In", d.Output);
    }

    [Fact]
    public async Task An_initiator_that_answers_nop_in_stays_connected()
    {
        await using var d = await Daemons.StartRamAsync(configure: c =>
        {
            Daemons.Iscsi(c)["nopInIntervalSeconds"] = 1;
            Daemons.Iscsi(c)["nopInTimeoutSeconds"] = 2;
        });
        await using var raw = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0, await raw.LoginAsync(Initiator, Daemons.Target));
        // Receive answers pings; a NOP-Out with an ITT gets its data echoed back.
        var h = new byte[48];
        h[0] = 0x40; h[1] = 0x80;
        h[16] = 0; h[17] = 0; h[18] = 0x12; h[19] = 0x34;
        h[20] = h[21] = h[22] = h[23] = 0xFF;
        var answer = raw.ReceivePduAsync(); // answers the target's pings while it waits
        await Task.Delay(3500);
        await raw.SendPduAsync(h, Encoding.ASCII.GetBytes("ping!"));
        var (reply, data) = await answer;
        Assert.Equal(0x20, reply[0] & 0x3F);
        Assert.Equal("ping!", Encoding.ASCII.GetString(data));
        Assert.True(raw.NopInsAnswered >= 1);
        Assert.Equal(0, await raw.LogoutAsync());
    }

    /// <summary>
    /// The target queues at most 4096 PDUs for a connection whose initiator does not read; then
    /// that connection's reader waits (for a signal, not a timer) until the queue drains, while
    /// other sessions go on. With this side's socket buffers small, 100 000 pings of 512 bytes are
    /// far more than the kernel buffers, the 4096 queued answers and the target's receive buffer
    /// hold together, so the sending must stall until this side reads.
    /// </summary>
    [Fact]
    public async Task An_initiator_that_stops_reading_stalls_only_its_own_connection_and_gets_every_answer_when_it_reads()
    {
        const int Pings = 100_000;
        await using var d = await Daemons.StartRamAsync("16M");
        await using var raw = await RawInitiator.ConnectAsync(d.Port, socketBufferBytes: 64 * 1024);
        Assert.Equal(0, await raw.LoginAsync(Initiator, Daemons.Target, isid: 0x4000000000A0));
        static byte[] Payload(int i)
        {
            var p = new byte[512];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(p, i);
            return p;
        }
        var sending = Task.Run(async () =>
        {
            for (var i = 0; i < Pings; i++)
                await raw.SendNopOutAsync((uint)i, Payload(i));
        });
        await Task.WhenAny(sending, Task.Delay(TimeSpan.FromSeconds(3)));
        Assert.False(sending.IsCompleted, $"the target took all {Pings} pings though none of its answers was read");

        // Another session is served meanwhile.
        await using (var other = await RawInitiator.ConnectAsync(d.Port))
        {
            Assert.Equal(0, await other.LoginAsync(Initiator, Daemons.Target, isid: 0x4000000000A1));
            await other.CommandAsync(new byte[6]).WaitAsync(TimeSpan.FromSeconds(10)); // takes the power-on unit attention
            Assert.Equal(0, (await other.CommandAsync(new byte[6]).WaitAsync(TimeSpan.FromSeconds(10))).Status);
        }

        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        for (var i = 0; i < Pings; i++)
        {
            var (reply, data) = await raw.ReceivePduAsync().WaitAsync(limit.Token);
            Assert.Equal(0x20, reply[0] & 0x3F);
            Assert.Equal((uint)i, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(16)));
            if (!data.AsSpan().SequenceEqual(Payload(i)))
                Assert.Fail($"NOP-In {i} does not echo its ping's data");
        }
        await sending.WaitAsync(limit.Token);
        Assert.Equal(0, await raw.LogoutAsync());
    }

    [Fact]
    public async Task SendTargets_in_a_discovery_session_lists_targets_with_their_portal()
    {
        await using var d = await Daemons.StartRamAsync();
        await using var raw = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0, await raw.LoginAsync(Initiator, target: null));
        var h = new byte[48];
        h[0] = 0x44; h[1] = 0x80;
        h[19] = 7;
        h[20] = h[21] = h[22] = h[23] = 0xFF;
        await raw.SendPduAsync(h, RawInitiator.Text([("SendTargets", "All")]));
        var (reply, data) = await raw.ReceivePduAsync();
        Assert.Equal(0x24, reply[0] & 0x3F);
        var text = Encoding.UTF8.GetString(data);
        Assert.Contains($"TargetName={Daemons.Target}\0", text);
        Assert.Contains($"TargetAddress=127.0.0.1:{d.Port},1\0", text);
        // SCSI commands are not allowed in a discovery session.
        await raw.SendPduAsync(new byte[48] { 0x01, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, []);
        var (reject, _) = await raw.ReceivePduAsync();
        Assert.Equal(0x3F, reject[0] & 0x3F);
        Assert.Equal(0, await raw.LogoutAsync());
    }
}
