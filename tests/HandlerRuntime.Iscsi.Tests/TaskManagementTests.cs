namespace HandlerRuntime.Iscsi.Tests;

/// <summary>Task management functions through a raw initiator, with the unit attentions they imply.</summary>
public sealed class TaskManagementTests
{
    private const string Initiator = "iqn.2026-11.org.handler-runtime:tests";

    private static async Task<RawInitiator> LoginAsync(HrtDaemon d, ulong isid)
    {
        var raw = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0, await raw.LoginAsync(Initiator, Daemons.Target, isid: isid));
        await raw.CommandAsync(new byte[6]); // takes the power-on unit attention
        Assert.Equal(0, (await raw.CommandAsync(new byte[6])).Status);
        return raw;
    }

    [Fact]
    public async Task Lun_reset_completes_and_every_initiator_sees_29_00()
    {
        await using var d = await Daemons.StartRamAsync("16M");
        await using var a = await LoginAsync(d, 0x400000000100);
        await using var b = await LoginAsync(d, 0x400000000101);
        Assert.Equal(0, await a.TaskManagementAsync(5));      // LOGICAL UNIT RESET: function complete
        foreach (var who in new[] { a, b })
        {
            var tur = await who.CommandAsync(new byte[6]);
            Assert.Equal(2, tur.Status);
            Assert.Equal((6, 0x29, 0x00), tur.SenseCode);
            Assert.Equal(0, (await who.CommandAsync(new byte[6])).Status);
        }
        Assert.Equal(2, await a.TaskManagementAsync(5, lun: 9)); // no such LUN
    }

    [Fact]
    public async Task Abort_functions_answer_for_tasks_that_are_gone_and_unsupported_ones_say_so()
    {
        await using var d = await Daemons.StartRamAsync("16M");
        await using var a = await LoginAsync(d, 0x400000000102);
        Assert.Equal(1, await a.TaskManagementAsync(1, referencedTag: 0x7777)); // ABORT TASK: task does not exist
        Assert.Equal(0, await a.TaskManagementAsync(2));                          // ABORT TASK SET
        Assert.Equal(0, await a.TaskManagementAsync(4));                          // CLEAR TASK SET
        Assert.Equal(5, await a.TaskManagementAsync(3));                          // CLEAR ACA: not supported (no NACA)
        Assert.Equal(4, await a.TaskManagementAsync(8));                          // TASK REASSIGN needs ERL 2
        Assert.Equal(0, (await a.CommandAsync(new byte[6])).Status);              // the session goes on
    }

    [Fact]
    public async Task Target_cold_reset_answers_then_closes_every_session_of_the_target()
    {
        await using var d = await Daemons.StartRamAsync("16M");
        await using var a = await LoginAsync(d, 0x400000000103);
        await using var b = await LoginAsync(d, 0x400000000104);
        Assert.Equal(0, await a.TaskManagementAsync(7));
        Assert.Equal(0, await a.Stream.ReadAsync(new byte[1]).AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(0, await b.Stream.ReadAsync(new byte[1]).AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        // A new login works and sees the reset.
        await using var c = await RawInitiator.ConnectAsync(d.Port);
        Assert.Equal(0, await c.LoginAsync(Initiator, Daemons.Target, isid: 0x400000000103));
        var tur = await c.CommandAsync(new byte[6]);
        Assert.Equal(2, tur.Status);
        Assert.Equal(0x29, tur.SenseCode.Asc);
    }

    [Fact]
    public async Task Target_warm_reset_keeps_sessions_and_raises_unit_attention()
    {
        await using var d = await Daemons.StartRamAsync("16M");
        await using var a = await LoginAsync(d, 0x400000000105);
        Assert.Equal(0, await a.TaskManagementAsync(6));
        var tur = await a.CommandAsync(new byte[6]);
        Assert.Equal((6, 0x29, 0x00), tur.SenseCode);
        Assert.Equal(0, (await a.CommandAsync(new byte[6])).Status);
    }
}
