using HandlerRuntime.Sdk;
using HandlerRuntime.Tests.Handlers;

namespace HandlerRuntime.Tests.Scsi;

/// <summary>
/// Every persistent reservation type against every class of command, from the holder, a
/// registered I_T nexus and an unregistered one. The expectations are SPC-4 5.13.1's table
/// ("SPC commands that are allowed in the presence of various reservations") and SBC-3's,
/// written out here independently of the runtime's rules.
/// </summary>
public sealed class ReservationAccessTests(BundledHandlers handlers) : IClassFixture<BundledHandlers>
{
    private const ulong HolderKey = 0x1111, RegisteredKey = 0x2222;

    private static byte[] Block() => new byte[512];

    /// <summary>Commands by class: A = allowed under every type, R = read class, W = write class.</summary>
    private static readonly (string Name, char Class, byte[] Cdb, byte[]? Data)[] Commands =
    [
        ("INQUIRY", 'A', Cdbs.Inquiry(), null),
        ("REQUEST SENSE", 'A', Cdbs.RequestSense(), null),
        ("TEST UNIT READY", 'A', Cdbs.TestUnitReady(), null),
        ("READ CAPACITY(10)", 'A', Cdbs.ReadCapacity10(), null),
        ("READ CAPACITY(16)", 'A', Cdbs.ReadCapacity16(), null),
        ("REPORT LUNS", 'A', Cdbs.ReportLuns(), null),
        ("PERSISTENT RESERVE IN", 'A', PrCdbs.In(PrCdbs.ReadReservation), null),
        ("READ(6)", 'R', Cdbs.Read6(0, 1), null),
        ("READ(10)", 'R', Cdbs.Read10(0, 1), null),
        ("READ(16)", 'R', Cdbs.Read16(0, 1), null),
        ("VERIFY(10)", 'R', Cdbs.Verify10(0, 1), null),
        ("MODE SENSE(6)", 'R', Cdbs.ModeSense6(0x3F), null),
        ("MODE SENSE(10)", 'R', Cdbs.ModeSense10(0x3F), null),
        ("WRITE(10)", 'W', Cdbs.Write10(0, 1), Block()),
        ("WRITE(16)", 'W', Cdbs.Write16(0, 1), Block()),
        ("WRITE SAME(10)", 'W', Cdbs.WriteSame10(0, 2), Block()),
        ("UNMAP", 'W', Cdbs.Unmap(24), Cdbs.UnmapList((8, 1))),
        ("SYNCHRONIZE CACHE(10)", 'W', Cdbs.SyncCache10(), null),
        ("MODE SELECT(6)", 'W', Cdbs.ModeSelect6(0), null),
    ];

    /// <summary>
    /// Per type: may a registered non-holder read, write; may an unregistered nexus read, write.
    /// (The same four answers libiscsi's PGR access tests check.)
    /// </summary>
    public static TheoryData<PrType, string> Types => new()
    {
        { PrType.WriteExclusive, "1010" },
        { PrType.ExclusiveAccess, "0000" },
        { PrType.WriteExclusiveRegistrantsOnly, "1110" },
        { PrType.ExclusiveAccessRegistrantsOnly, "1100" },
        { PrType.WriteExclusiveAllRegistrants, "1110" },
        { PrType.ExclusiveAccessAllRegistrants, "1100" },
    };

    [Theory]
    [MemberData(nameof(Types))]
    public async Task Each_command_class_is_allowed_or_conflicts_as_spc4_says(PrType type, string access)
    {
        await using var lun = await PrLun.CreateAsync(handlers);
        var holder = await lun.InitiatorAsync();
        var registered = await lun.InitiatorAsync();
        var unregistered = await lun.InitiatorAsync();
        PrAssert.Good(await holder.RegisterAsync(HolderKey));
        PrAssert.Good(await registered.RegisterAsync(RegisteredKey));
        PrAssert.Good(await holder.ReserveAsync(HolderKey, type));

        var wrong = new List<string>();
        foreach (var (who, initiator, read, write) in new[]
                 {
                     ("holder", holder, true, true),
                     ("registered", registered, access[0] == '1', access[1] == '1'),
                     ("unregistered", unregistered, access[2] == '1', access[3] == '1'),
                 })
        {
            foreach (var (name, cls, cdb, data) in Commands)
            {
                var allowed = cls switch { 'A' => true, 'R' => read, _ => write };
                var r = await initiator.RunAsync(cdb, data);
                var ok = allowed ? r.Good : r.Status == ScsiStatus.ReservationConflict && r.SenseBytes.Length == 0;
                if (!ok)
                    wrong.Add($"{who} {name}: expected {(allowed ? "GOOD" : "RESERVATION CONFLICT")}, got {r}");
            }
        }
        Assert.True(wrong.Count == 0, $"{type}:\n" + string.Join("\n", wrong));
    }

    [Fact]
    public async Task The_conflict_comes_before_the_cdb_is_checked_and_after_a_unit_attention()
    {
        await using var lun = await PrLun.CreateAsync(handlers);
        var holder = await lun.InitiatorAsync();
        var other = await lun.InitiatorAsync();
        PrAssert.Good(await holder.RegisterAsync(HolderKey));
        PrAssert.Good(await holder.ReserveAsync(HolderKey, PrType.ExclusiveAccess));
        PrAssert.Conflict(await other.RunAsync(Cdbs.Read10(0, 1, 0x20)), "an invalid RDPROTECT from a nexus the reservation bars");
        PrAssert.InvalidFieldInCdb(await holder.RunAsync(Cdbs.Read10(0, 1, 0x20)), "the holder gets the field checked");
        PrAssert.Conflict(await other.RunAsync(Cdbs.Read10(uint.MaxValue, 1)), "out of range, but barred first");

        // A pending unit attention is reported before the conflict.
        var late = ScsiHarness.NewNexus("iqn.2026-11.org.handler-runtime:late");
        var first = await lun.Harness.RunAsync(Cdbs.Read10(0, 1), nexus: late);
        Assert.Equal((SenseKey.UnitAttention, (byte)0x29), (first.Sense.Key, first.Sense.Asc));
        PrAssert.Conflict(await lun.Harness.RunAsync(Cdbs.Read10(0, 1), nexus: late));
    }

    [Fact]
    public async Task Persistent_reserve_out_from_non_holders_follows_the_service_action_table()
    {
        await using var lun = await PrLun.CreateAsync(handlers);
        var holder = await lun.InitiatorAsync();
        var registered = await lun.InitiatorAsync();
        var unregistered = await lun.InitiatorAsync();
        PrAssert.Good(await holder.RegisterAsync(HolderKey));
        PrAssert.Good(await registered.RegisterAsync(RegisteredKey));
        PrAssert.Good(await holder.ReserveAsync(HolderKey, PrType.ExclusiveAccess));

        // Not registered: REGISTER and REGISTER AND IGNORE EXISTING KEY are allowed, the rest conflict.
        PrAssert.Conflict(await unregistered.ReserveAsync(0, PrType.ExclusiveAccess));
        PrAssert.Conflict(await unregistered.ReleaseAsync(0, PrType.ExclusiveAccess));
        PrAssert.Conflict(await unregistered.OutAsync(PrCdbs.Clear, 0));
        PrAssert.Conflict(await unregistered.OutAsync(PrCdbs.Preempt, 0, HolderKey, PrType.ExclusiveAccess));
        PrAssert.Conflict(await unregistered.OutAsync(PrCdbs.PreemptAndAbort, 0, HolderKey, PrType.ExclusiveAccess));
        PrAssert.Conflict(await unregistered.MoveAsync(0, 0x99, 1, PrCdbs.IscsiTransportId(registered.Nexus.InitiatorPort)));
        PrAssert.Good(await unregistered.OutAsync(PrCdbs.Register, 0, 0x3333));
        PrAssert.Good(await unregistered.OutAsync(PrCdbs.RegisterAndIgnore, 0, 0x4444));

        // Registered: RESERVE and REGISTER AND MOVE conflict; RELEASE is a no-op; CLEAR works.
        PrAssert.Conflict(await registered.ReserveAsync(RegisteredKey, PrType.ExclusiveAccess));
        PrAssert.Conflict(await registered.MoveAsync(RegisteredKey, 0x99, 1, PrCdbs.IscsiTransportId(unregistered.Nexus.InitiatorPort)));
        PrAssert.Good(await registered.ReleaseAsync(RegisteredKey, PrType.ExclusiveAccess));
        Assert.Equal((HolderKey, PrType.ExclusiveAccess), await registered.ReadReservationAsync());
        PrAssert.Good(await registered.OutAsync(PrCdbs.Clear, RegisteredKey));
        Assert.Null(await registered.ReadReservationAsync());
    }
}
