using System.Text.Json.Nodes;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;
using HandlerRuntime.Tests.Handlers;
using Serilog;

namespace HandlerRuntime.Tests.Scsi;

/// <summary>
/// APTPL (SPC-4 5.13.5): with the bit set, registrations and the reservation are saved in
/// the LUN's state directory and a new LU on the same directory (a restart) has them again;
/// with it cleared the saved state goes.
/// </summary>
public sealed class AptplTests(BundledHandlers handlers) : IClassFixture<BundledHandlers>
{
    private const ulong KeyA = 0x0A0A_0A0A_0A0A_0A0A, KeyB = 0x0B0B_0B0B_0B0B_0B0B;
    private const string FileName = "persistent-reservations.json";
    private static readonly NexusTable Nexuses = new();

    // Fixed initiator port names, as initiators log in again after a restart.
    private static ItNexus NexusOf(string isid)
        => Nexuses.Get($"iqn.2026-11.org.handler-runtime:aptpl,i,0x{isid}", "iqn.2026-11.org.handler-runtime:aptpl", ScsiHarness.Port);

    [Fact]
    public async Task Registrations_and_reservation_survive_a_restart_with_aptpl()
    {
        using var dir = new TempDir("aptpl");
        uint generation;
        await using (var first = await PrLun.CreateAsync(handlers, dir.Path))
        {
            var a = await first.AttachAsync(NexusOf("400000000a01"));
            var b = await first.AttachAsync(NexusOf("400000000b01"));
            PrAssert.Good(await a.RegisterAsync(KeyA, aptpl: true));
            Assert.True(File.Exists(dir.File(FileName)));
            PrAssert.Good(await b.RegisterAsync(KeyB, allTargetPorts: true)); // APTPL 0 on this one would turn it off...
            Assert.False(File.Exists(dir.File(FileName)), "the last valid APTPL bit was zero: nothing to keep");
            PrAssert.Good(await b.OutAsync(PrCdbs.Register, KeyB, KeyB, aptpl: true)); // ...and back on
            PrAssert.Good(await a.ReserveAsync(KeyA, PrType.ExclusiveAccessRegistrantsOnly));
            generation = await a.GenerationAsync();
            Assert.False(File.Exists(dir.File(FileName + ".tmp")));
        }

        // "Restart": a new LU on the same state directory, initiators logging in again.
        await using var second = await PrLun.CreateAsync(handlers, dir.Path);
        var a2 = await second.AttachAsync(NexusOf("400000000a01"));
        var b2 = await second.AttachAsync(NexusOf("400000000b01"));
        var c2 = await second.AttachAsync(NexusOf("400000000c01"));
        await c2.ExpectKeysAsync(generation, KeyA, KeyB);
        Assert.Equal((KeyA, PrType.ExclusiveAccessRegistrantsOnly), await c2.ReadReservationAsync());
        var (_, status) = await c2.ReadFullStatusAsync();
        Assert.True(Assert.Single(status, s => s.Key == KeyB).AllTargetPorts);
        Assert.Equal(a2.Nexus.InitiatorPort, Assert.Single(status, s => s.Holder).Name);
        Assert.Equal(0x01, PrInitiator.Good(await c2.RunAsync(PrCdbs.In(PrCdbs.ReportCapabilities)))[3] & 0x01); // PTPL_A
        // And the access rules hold as before.
        PrAssert.Good(await a2.RunAsync(Cdbs.Write10(0, 1), new byte[512]));
        PrAssert.Good(await b2.RunAsync(Cdbs.Write10(0, 1), new byte[512]));
        PrAssert.Conflict(await c2.RunAsync(Cdbs.Read10(0, 1)));

        // Turning APTPL off removes the file: the next restart starts empty.
        PrAssert.Good(await a2.OutAsync(PrCdbs.Register, KeyA, KeyA, aptpl: false));
        Assert.False(File.Exists(dir.File(FileName)));
        await using var third = await PrLun.CreateAsync(handlers, dir.Path);
        var c3 = await third.AttachAsync(NexusOf("400000000c01"));
        Assert.Empty((await c3.ReadKeysAsync()).Keys);
        Assert.Null(await c3.ReadReservationAsync());
    }

    [Fact]
    public async Task Every_change_is_saved_while_aptpl_is_in_force()
    {
        using var dir = new TempDir("aptpl");
        await using var lun = await PrLun.CreateAsync(handlers, dir.Path);
        var a = await lun.AttachAsync(NexusOf("400000001a01"));
        var b = await lun.AttachAsync(NexusOf("400000001b01"));
        PrAssert.Good(await a.RegisterAsync(KeyA, aptpl: true));
        PrAssert.Good(await b.RegisterAsync(KeyB, aptpl: true));
        PrAssert.Good(await a.ReserveAsync(KeyA, PrType.WriteExclusive));
        var saved = JsonNode.Parse(File.ReadAllText(dir.File(FileName)))!;
        Assert.Equal((int)PrType.WriteExclusive, (int)saved["reservation"]!["type"]!);
        Assert.Equal(a.Nexus.InitiatorPort, (string?)saved["reservation"]!["holder"]!["initiatorPort"]);

        PrAssert.Good(await b.OutAsync(PrCdbs.Preempt, KeyB, KeyA, PrType.ExclusiveAccess));
        saved = JsonNode.Parse(File.ReadAllText(dir.File(FileName)))!;
        Assert.Equal((int)PrType.ExclusiveAccess, (int)saved["reservation"]!["type"]!);
        Assert.Equal("0x0b0b0b0b0b0b0b0b", (string?)Assert.Single(saved["registrations"]!.AsArray())!["key"]);
        Assert.Equal(await b.GenerationAsync(), (uint)saved["generation"]!);

        // CLEAR has no APTPL bit: the last one (set) stays in force and the empty state is kept.
        PrAssert.Good(await b.OutAsync(PrCdbs.Clear, KeyB));
        saved = JsonNode.Parse(File.ReadAllText(dir.File(FileName)))!;
        Assert.Empty(saved["registrations"]!.AsArray());
        Assert.Null(saved["reservation"]);
    }

    [Fact]
    public async Task A_state_file_that_cannot_be_trusted_stops_the_lu_from_being_created()
    {
        using var dir = new TempDir("aptpl");
        await using var device = await handlers.OpenAsync("ram/@", 1 << 20);
        var log = new LoggerConfiguration().CreateLogger();
        foreach (var bad in new[]
                 {
                     "{ not json",
                     """{ "version": 7, "registrations": [] }""",
                     """{ "version": 1, "registrations": [ { "initiator": "iqn.x", "key": "0x0" } ] }""",
                     """{ "version": 1, "registrations": [], "reservation": { "type": 3, "holder": { "initiator": "iqn.x" } } }""",
                     """{ "version": 1, "registrations": [ { "initiator": "iqn.x", "key": "0x5" } ], "reservation": { "type": 2, "holder": { "initiator": "iqn.x" } } }""",
                 })
        {
            File.WriteAllText(dir.File(FileName), bad);
            var e = Assert.Throws<InvalidDataException>(() => new ScsiLun(LunIdentity.FromName("bad", "ram"), device, false, true, log, dir.Path));
            Assert.Contains(FileName, e.Message);
        }
    }

    [Fact]
    public async Task Aptpl_state_made_in_process_is_restored_by_the_daemon_after_a_restart()
    {
        await using var daemon = await HrtDaemon.StartAsync();
        await daemon.CliOkAsync("lun", "create", "pr0", "ram/@", "--size", "16M");
        var stateDirectory = Path.Combine(daemon.StateDirectory, "luns", "pr0");
        Assert.True(Directory.Exists(stateDirectory));
        var before = JsonNode.Parse(await daemon.CliOkAsync("lun", "list", "--json"))!.AsArray().Single(l => (string?)l!["name"] == "pr0")!;
        Assert.Empty(before["reservations"]!["registrations"]!.AsArray());

        // The daemon has no fabric in these tests: make the registrations through an LU on the
        // LUN's state directory in this process, as the daemon's LU would have.
        var a = NexusOf("400000002a01");
        var b = NexusOf("400000002b01");
        await using (var lun = await PrLun.CreateAsync(handlers, stateDirectory))
        {
            var pa = await lun.AttachAsync(a);
            var pb = await lun.AttachAsync(b);
            PrAssert.Good(await pa.RegisterAsync(KeyA, aptpl: true));
            PrAssert.Good(await pb.RegisterAsync(KeyB, aptpl: true));
            PrAssert.Good(await pb.ReserveAsync(KeyB, PrType.WriteExclusiveRegistrantsOnly));
        }
        var saved = File.ReadAllText(Path.Combine(stateDirectory, FileName));

        await daemon.RestartAsync();
        var after = JsonNode.Parse(await daemon.CliOkAsync("lun", "list", "--json"))!.AsArray().Single(l => (string?)l!["name"] == "pr0")!;
        Assert.Equal("serving", (string?)after["state"]);
        var reservations = after["reservations"]!;
        Assert.True((bool)reservations["aptpl"]!);
        Assert.Equal("Write Exclusive - Registrants Only", (string?)reservations["type"]);
        var registrations = reservations["registrations"]!.AsArray();
        Assert.Equal(
            [(a.InitiatorPort, "0x0a0a0a0a0a0a0a0a", false), (b.InitiatorPort, "0x0b0b0b0b0b0b0b0b", true)],
            registrations.Select(r => ((string)r!["initiator"]!, (string)r["key"]!, (bool)r["holder"]!)).ToArray());
        Assert.Contains("Restored persistent reservations", daemon.Output + (File.Exists(daemon.LogFile) ? File.ReadAllText(daemon.LogFile) : ""));
        // Loading does not rewrite the state; deleting the LUN removes it with the state directory.
        Assert.Equal(saved, File.ReadAllText(Path.Combine(stateDirectory, FileName)));
        await daemon.CliOkAsync("lun", "delete", "pr0");
        Assert.False(File.Exists(Path.Combine(stateDirectory, FileName)));
    }
}
