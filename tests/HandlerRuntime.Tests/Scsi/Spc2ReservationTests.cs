using HandlerRuntime.Sdk;
using HandlerRuntime.Tests.Handlers;

namespace HandlerRuntime.Tests.Scsi;

/// <summary>
/// RESERVE/RELEASE (6) and (10), the SPC-2 reservations, and how they live beside persistent
/// reservations (SPC-2 5.5.1, SPC-4 5.13.3).
/// </summary>
public sealed class Spc2ReservationTests(BundledHandlers handlers) : IClassFixture<BundledHandlers>
{
    private const ulong Key = 0xFEED;

    public static TheoryData<string> Sizes => new() { "6", "10" };

    private static byte[] Reserve(string size) => size == "6" ? PrCdbs.Reserve6() : PrCdbs.Reserve10();

    private static byte[] Release(string size) => size == "6" ? PrCdbs.Release6() : PrCdbs.Release10();

    [Theory]
    [MemberData(nameof(Sizes))]
    public async Task Reserve_excludes_other_initiators_until_the_holder_releases(string size)
    {
        await using var lun = await PrLun.CreateAsync(handlers);
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();

        PrAssert.Good(await a.RunAsync(Reserve(size)));
        PrAssert.Good(await a.RunAsync(Reserve(size)), "the holder reserving again");
        PrAssert.Conflict(await b.RunAsync(Reserve(size)));
        PrAssert.Good(await b.RunAsync(Release(size)), "RELEASE from another initiator does nothing");

        // The holder keeps full access; the other initiator gets INQUIRY, REQUEST SENSE and REPORT LUNS only.
        PrAssert.Good(await a.RunAsync(Cdbs.ModeSense6(0x3F)));
        PrAssert.Good(await a.RunAsync(Cdbs.Write10(0, 1), new byte[512]));
        foreach (var (name, cdb, data) in new (string, byte[], byte[]?)[]
                 {
                     ("MODE SENSE(6)", Cdbs.ModeSense6(0x3F), null),
                     ("TEST UNIT READY", Cdbs.TestUnitReady(), null),
                     ("READ CAPACITY(10)", Cdbs.ReadCapacity10(), null),
                     ("READ(10)", Cdbs.Read10(0, 1), null),
                     ("WRITE(10)", Cdbs.Write10(0, 1), new byte[512]),
                     ("PERSISTENT RESERVE IN", PrCdbs.In(PrCdbs.ReadKeys), null),
                 })
            PrAssert.Conflict(await b.RunAsync(cdb, data), name);
        PrAssert.Good(await b.RunAsync(Cdbs.Inquiry()));
        PrAssert.Good(await b.RunAsync(Cdbs.RequestSense()));
        PrAssert.Good(await b.RunAsync(Cdbs.ReportLuns()));

        PrAssert.Good(await a.RunAsync(Release(size)));
        PrAssert.Good(await b.RunAsync(Cdbs.Read10(0, 1)));
        PrAssert.Good(await b.RunAsync(Reserve(size)));
        PrAssert.Conflict(await a.RunAsync(Cdbs.Read10(0, 1)));
        PrAssert.Good(await b.RunAsync(Release(size == "6" ? "10" : "6")), "either RELEASE releases either RESERVE");
        PrAssert.Good(await a.RunAsync(Cdbs.Read10(0, 1)));
    }

    [Fact]
    public async Task Third_party_and_long_id_reservations_are_refused_as_invalid_fields()
    {
        await using var lun = await PrLun.CreateAsync(handlers);
        var a = await lun.InitiatorAsync();
        PrAssert.InvalidFieldInCdb(await a.RunAsync(PrCdbs.Reserve10().With(0x10, 1)), "3RDPTY");
        PrAssert.InvalidFieldInCdb(await a.RunAsync(PrCdbs.Reserve10().With(0x02, 1)), "LONGID");
        PrAssert.InvalidFieldInCdb(await a.RunAsync(PrCdbs.Reserve6().With(0x01, 1)), "EXTENT");
        Assert.Null(lun.Lun.Reservations.Spc2Holder);
    }

    [Fact]
    public async Task A_logical_unit_reset_and_the_loss_of_the_nexus_release_it()
    {
        await using var lun = await PrLun.CreateAsync(handlers);
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        PrAssert.Good(await a.RunAsync(PrCdbs.Reserve6()));
        lun.Lun.Reset();
        await b.ExpectUnitAttentionAsync(0x29, 0x00);
        PrAssert.Good(await b.RunAsync(PrCdbs.Reserve6()), "reset dropped A's reservation");

        await a.ExpectUnitAttentionAsync(0x29, 0x00);
        PrAssert.Conflict(await a.RunAsync(PrCdbs.Reserve6()));
        lun.Harness.Target.NexusLost(a.Nexus); // not the holder: nothing happens
        PrAssert.Conflict(await a.RunAsync(PrCdbs.Reserve6()));
        lun.Harness.Target.NexusLost(b.Nexus);
        PrAssert.Good(await a.RunAsync(PrCdbs.Reserve6()), "B's session is gone, so is its reservation");
    }

    [Fact]
    public async Task Persistent_reservations_survive_a_logical_unit_reset_and_nexus_loss()
    {
        await using var lun = await PrLun.CreateAsync(handlers);
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(Key));
        PrAssert.Good(await a.ReserveAsync(Key, PrType.ExclusiveAccess));
        lun.Lun.Reset();
        lun.Harness.Target.NexusLost(a.Nexus);
        await b.ExpectUnitAttentionAsync(0x29, 0x00);
        Assert.Equal((Key, PrType.ExclusiveAccess), await b.ReadReservationAsync());
        PrAssert.Conflict(await b.RunAsync(Cdbs.Read10(0, 1)));
    }

    [Fact]
    public async Task Persistent_reservation_commands_conflict_for_everyone_while_a_reserve_is_held()
    {
        await using var lun = await PrLun.CreateAsync(handlers);
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        PrAssert.Good(await a.RunAsync(PrCdbs.Reserve10()));
        foreach (var initiator in new[] { a, b })
        {
            PrAssert.Conflict(await initiator.RegisterAsync(Key), "REGISTER");
            for (byte sa = 0; sa < 4; sa++)
                PrAssert.Conflict(await initiator.RunAsync(PrCdbs.In(sa)), $"PERSISTENT RESERVE IN {sa}");
        }
        PrAssert.Good(await a.RunAsync(PrCdbs.Release10()));
        PrAssert.Good(await a.RegisterAsync(Key));
    }

    [Fact]
    public async Task Reserve_and_release_conflict_while_registrations_exist()
    {
        await using var lun = await PrLun.CreateAsync(handlers);
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(Key));
        // No reservation yet: registrations alone make RESERVE and RELEASE conflict, for everyone.
        foreach (var initiator in new[] { a, b })
        {
            PrAssert.Conflict(await initiator.RunAsync(PrCdbs.Reserve6()));
            PrAssert.Conflict(await initiator.RunAsync(PrCdbs.Release6()));
            PrAssert.Conflict(await initiator.RunAsync(PrCdbs.Reserve10()));
        }
        Assert.Null(lun.Lun.Reservations.Spc2Holder);
        PrAssert.Good(await a.UnregisterAsync(Key));
        PrAssert.Good(await b.RunAsync(PrCdbs.Reserve6()), "with no registrations SPC-2 applies again");
    }

    [Theory]
    [InlineData(PrType.WriteExclusive, false)]
    [InlineData(PrType.ExclusiveAccessRegistrantsOnly, true)]
    [InlineData(PrType.WriteExclusiveAllRegistrants, true)]
    public async Task Reserve_and_release_from_a_holder_or_admitted_registrant_are_good_and_change_nothing(PrType type, bool registrantsAdmitted)
    {
        await using var lun = await PrLun.CreateAsync(handlers);
        var holder = await lun.InitiatorAsync();
        var registrant = await lun.InitiatorAsync();
        var stranger = await lun.InitiatorAsync();
        PrAssert.Good(await holder.RegisterAsync(Key));
        PrAssert.Good(await registrant.RegisterAsync(Key + 1));
        PrAssert.Good(await holder.ReserveAsync(Key, type));

        // SPC-4 5.13.3 a): the holder.
        PrAssert.Good(await holder.RunAsync(PrCdbs.Reserve6()));
        PrAssert.Good(await holder.RunAsync(PrCdbs.Release10()));
        // b): a registrant, when the type admits registrants; otherwise SPC-2 says conflict.
        if (registrantsAdmitted)
        {
            PrAssert.Good(await registrant.RunAsync(PrCdbs.Reserve10()));
            PrAssert.Good(await registrant.RunAsync(PrCdbs.Release6()));
        }
        else
        {
            PrAssert.Conflict(await registrant.RunAsync(PrCdbs.Reserve10()));
            PrAssert.Conflict(await registrant.RunAsync(PrCdbs.Release6()));
        }
        PrAssert.Conflict(await stranger.RunAsync(PrCdbs.Reserve6()));
        PrAssert.Conflict(await stranger.RunAsync(PrCdbs.Release6()));

        // No SPC-2 reservation was made and the persistent one is untouched.
        Assert.Null(lun.Lun.Reservations.Spc2Holder);
        Assert.Equal(type, (await stranger.ReadReservationAsync())?.Type);
        PrAssert.Good(await holder.RunAsync(PrCdbs.In(PrCdbs.ReadKeys)), "persistent reservation commands still work");
    }
}
