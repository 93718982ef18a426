using System.Buffers.Binary;
using HandlerRuntime.Sdk;
using HandlerRuntime.Tests.Handlers;

namespace HandlerRuntime.Tests.Scsi;

/// <summary>
/// PERSISTENT RESERVE OUT service actions and PERSISTENT RESERVE IN, through the real SCSI
/// core from several I_T nexuses (SPC-4 5.13, 6.15, 6.16): who may do what, with which key,
/// what PRGENERATION counts, and which unit attentions reach whom.
/// </summary>
public sealed class PersistentReservationTests(BundledHandlers handlers) : IClassFixture<BundledHandlers>
{
    private const ulong KeyA = 0xA1A1_0000_0000_0001, KeyB = 0xB2B2_0000_0000_0002, KeyC = 0xC3C3_0000_0000_0003, KeyD = 0xD4D4_0000_0000_0004;

    private Task<PrLun> NewLunAsync(string? stateDirectory = null) => PrLun.CreateAsync(handlers, stateDirectory);

    [Fact]
    public async Task Register_follows_the_register_behaviour_table_and_counts_generations()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var g0 = await a.GenerationAsync();

        // Unregistered: a non-zero RESERVATION KEY conflicts and counts nothing.
        PrAssert.Conflict(await a.OutAsync(PrCdbs.Register, key: 5, serviceActionKey: KeyA));
        Assert.Equal(g0, await a.GenerationAsync());
        // Unregistered with key zero and SARK zero: nothing to register, GOOD, the REGISTER counts.
        PrAssert.Good(await a.OutAsync(PrCdbs.Register, 0, 0));
        Assert.Empty((await a.ReadKeysAsync()).Keys);
        Assert.Equal(g0 + 1, await a.GenerationAsync());

        PrAssert.Good(await a.OutAsync(PrCdbs.Register, 0, KeyA));
        await a.ExpectKeysAsync(g0 + 2, KeyA);

        // Registered: REGISTER needs the registered key; REGISTER AND IGNORE EXISTING KEY does not.
        PrAssert.Conflict(await a.OutAsync(PrCdbs.Register, KeyB, KeyC));
        PrAssert.Conflict(await a.OutAsync(PrCdbs.Register, 0, KeyC));
        PrAssert.Good(await a.OutAsync(PrCdbs.Register, KeyA, KeyB));
        Assert.Equal(new ulong[] { KeyB }, (await a.ReadKeysAsync()).Keys);
        PrAssert.Good(await a.OutAsync(PrCdbs.RegisterAndIgnore, 0x1234, KeyC));
        await a.ExpectKeysAsync(g0 + 4, KeyC);

        // SARK zero unregisters.
        PrAssert.Good(await a.UnregisterAsync(KeyC));
        await a.ExpectKeysAsync(g0 + 5);
    }

    [Fact]
    public async Task Read_keys_lists_every_registration_and_reports_the_full_length_when_truncated()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await b.RegisterAsync(KeyB));
        Assert.Equal(new ulong[] { KeyA, KeyB }, (await b.ReadKeysAsync()).Keys);

        // The test suite's READ KEYS with an allocation length of 8: header only, ADDITIONAL LENGTH unchanged.
        var truncated = PrInitiator.Good(await a.RunAsync(PrCdbs.In(PrCdbs.ReadKeys, allocation: 8)));
        Assert.Equal(8, truncated.Length);
        Assert.Equal(16U, BinaryPrimitives.ReadUInt32BigEndian(truncated.AsSpan(4)));
        Assert.Equal(12, (await a.RunAsync(PrCdbs.In(PrCdbs.ReadKeys, allocation: 12))).DataIn.Length);
        Assert.Empty((await a.RunAsync(PrCdbs.In(PrCdbs.ReadKeys, allocation: 0))).DataIn);
    }

    [Theory]
    [InlineData(PrType.WriteExclusive)]
    [InlineData(PrType.ExclusiveAccess)]
    [InlineData(PrType.WriteExclusiveRegistrantsOnly)]
    [InlineData(PrType.ExclusiveAccessRegistrantsOnly)]
    [InlineData(PrType.WriteExclusiveAllRegistrants)]
    [InlineData(PrType.ExclusiveAccessAllRegistrants)]
    public async Task Reserve_and_release_every_type(PrType type)
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        var c = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await b.RegisterAsync(KeyB));
        var generation = await a.GenerationAsync();
        var allRegistrants = type is PrType.WriteExclusiveAllRegistrants or PrType.ExclusiveAccessAllRegistrants;

        PrAssert.Conflict(await c.ReserveAsync(0, type), "RESERVE from an unregistered nexus");
        PrAssert.Conflict(await a.ReserveAsync(KeyB, type), "RESERVE with another nexus's key");
        Assert.Null(await a.ReadReservationAsync());

        PrAssert.Good(await a.ReserveAsync(KeyA, type));
        // READ RESERVATION shows the holder's key, or zero for the all registrants types.
        Assert.Equal((allRegistrants ? 0 : KeyA, type), await c.ReadReservationAsync());
        PrAssert.Good(await a.ReserveAsync(KeyA, type), "the holder repeating its RESERVE");
        var other = type == PrType.WriteExclusive ? PrType.ExclusiveAccess : PrType.WriteExclusive;
        PrAssert.Conflict(await a.ReserveAsync(KeyA, other), "the holder changing the type with RESERVE");
        if (allRegistrants)
            PrAssert.Good(await b.ReserveAsync(KeyB, type), "every registrant holds an all registrants reservation");
        else
            PrAssert.Conflict(await b.ReserveAsync(KeyB, type), "RESERVE while another nexus holds the reservation");
        PrAssert.Conflict(await b.ReserveAsync(KeyB, other));

        // RELEASE: unregistered conflicts, a registered non-holder is a no-op, the wrong type is refused.
        PrAssert.Conflict(await c.ReleaseAsync(0, type));
        if (!allRegistrants)
        {
            PrAssert.Good(await b.ReleaseAsync(KeyB, type));
            Assert.Equal((KeyA, type), await a.ReadReservationAsync());
        }
        PrAssert.Sense(await a.ReleaseAsync(KeyA, other), SenseKey.IllegalRequest, 0x26, 0x04);
        PrAssert.Conflict(await a.ReleaseAsync(KeyB, type), "RELEASE with the wrong key");
        Assert.NotNull(await a.ReadReservationAsync());

        PrAssert.Good(await a.ReleaseAsync(KeyA, type));
        Assert.Null(await a.ReadReservationAsync());
        PrAssert.Good(await a.ReleaseAsync(KeyA, type), "RELEASE with no reservation");
        // RESERVE and RELEASE leave PRGENERATION alone, and the registrations too.
        await a.ExpectKeysAsync(generation, KeyA, KeyB);
    }

    [Fact]
    public async Task Reserve_checks_type_and_scope_before_anything_else()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        foreach (var bad in new byte[] { 0, 2, 4, 9, 0xF })
        {
            var p = PrCdbs.Parameters(KeyA, 0);
            PrAssert.InvalidFieldInCdb(await a.RunAsync(PrCdbs.Out(PrCdbs.Reserve, (PrType)bad, 24), p), $"TYPE {bad:X}h");
        }
        PrAssert.InvalidFieldInCdb(await a.RunAsync(PrCdbs.Out(PrCdbs.Reserve, PrType.WriteExclusive, 24, scope: 1), PrCdbs.Parameters(KeyA, 0)), "SCOPE 1h");
        PrAssert.InvalidFieldInCdb(await a.RunAsync(PrCdbs.Out(PrCdbs.Preempt, (PrType)2, 24), PrCdbs.Parameters(KeyA, KeyA)), "PREEMPT TYPE 2h");
        // REGISTER and CLEAR ignore SCOPE and TYPE.
        PrAssert.Good(await a.RunAsync(PrCdbs.Out(PrCdbs.Register, (PrType)0xF, 24, scope: 0xF), PrCdbs.Parameters(KeyA, KeyB)));
        PrAssert.Good(await a.RunAsync(PrCdbs.Out(PrCdbs.Clear, (PrType)0xF, 24, scope: 0xF), PrCdbs.Parameters(KeyB, 0)));
        Assert.Null(await a.ReadReservationAsync());
    }

    [Fact]
    public async Task Parameter_lists_are_checked_for_length_and_reserved_fields()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        PrAssert.ParameterListLengthError(await a.RunAsync(PrCdbs.Out(PrCdbs.Register, 0, 0)), "no parameter list");
        PrAssert.ParameterListLengthError(await a.RunAsync(PrCdbs.Out(PrCdbs.Register, 0, 16), new byte[16]), "16 bytes");
        PrAssert.ParameterListLengthError(await a.RunAsync(PrCdbs.Out(PrCdbs.Register, 0, 28), new byte[28]), "28 bytes without SPEC_I_PT");
        Assert.Empty((await a.ReadKeysAsync()).Keys);

        var reservedBit = PrCdbs.Parameters(0, KeyA);
        reservedBit[20] |= 0x10;
        PrAssert.InvalidFieldInParameterList(await a.RunAsync(PrCdbs.Out(PrCdbs.Register, 0, 24), reservedBit), "reserved bit in byte 20");
        var reservedByte = PrCdbs.Parameters(0, KeyA);
        reservedByte[21] = 1;
        PrAssert.InvalidFieldInParameterList(await a.RunAsync(PrCdbs.Out(PrCdbs.Register, 0, 24), reservedByte), "reserved byte 21");
        // The CDB promises more than the initiator sent.
        PrAssert.Sense(await a.RunAsync(PrCdbs.Out(PrCdbs.Register, 0, 24), new byte[12]), SenseKey.IllegalRequest, 0x0E, 0x03);
        // APTPL on an LU without a state directory: PTPL_C is zero, so the bit is an invalid field.
        PrAssert.InvalidFieldInParameterList(await a.RegisterAsync(KeyA, aptpl: true));
        Assert.Empty((await a.ReadKeysAsync()).Keys);

        // SPEC_I_PT is for REGISTER only.
        PrAssert.Good(await a.RegisterAsync(KeyA));
        var tid = PrCdbs.IscsiTransportId("iqn.2026-11.org.handler-runtime:someone");
        foreach (var sa in new[] { PrCdbs.RegisterAndIgnore, PrCdbs.Reserve, PrCdbs.Release, PrCdbs.Clear, PrCdbs.Preempt })
            PrAssert.InvalidFieldInParameterList(await a.OutAsync(sa, KeyA, KeyA, PrType.WriteExclusive, transportIds: tid), $"SPEC_I_PT with service action {sa}");
        // Unknown service actions are invalid fields, not unknown opcodes.
        PrAssert.InvalidFieldInCdb(await a.RunAsync(PrCdbs.Out(8, 0, 24), PrCdbs.Parameters(KeyA, 0)), "REPLACE LOST RESERVATION (not offered)");
        PrAssert.InvalidFieldInCdb(await a.RunAsync(PrCdbs.Out(0x1F, 0, 24), PrCdbs.Parameters(KeyA, 0)));
        Assert.Equal(new ulong[] { KeyA }, (await a.ReadKeysAsync()).Keys);
    }

    [Fact]
    public async Task Persistent_reserve_in_accepts_service_actions_0_to_3_only()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        for (byte sa = 0; sa < 4; sa++)
            PrAssert.Good(await a.RunAsync(PrCdbs.In(sa)), $"service action {sa}");
        for (byte sa = 4; sa < 0x20; sa++)
            PrAssert.InvalidFieldInCdb(await a.RunAsync(PrCdbs.In(sa)), $"service action {sa:X2}h");
        PrAssert.InvalidFieldInCdb(await a.RunAsync(PrCdbs.In(0).With(1, 2)), "reserved CDB byte");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Report_capabilities_advertises_exactly_what_is_implemented(bool withStateDirectory)
    {
        using var dir = new TempDir("pr-caps");
        await using var lun = await NewLunAsync(withStateDirectory ? dir.Path : null);
        var a = await lun.InitiatorAsync();
        var caps = PrInitiator.Good(await a.RunAsync(PrCdbs.In(PrCdbs.ReportCapabilities)));
        // LENGTH 8; CRH, SIP_C, ATP_C, PTPL_C only with a place to persist; TMV, ALLOW COMMANDS 011b;
        // every one of the six types in the type mask.
        Assert.Equal(new byte[] { 0x00, 0x08, (byte)(withStateDirectory ? 0x1D : 0x1C), 0xB0, 0xEA, 0x01, 0, 0 }, caps);
        if (!withStateDirectory)
            return;
        PrAssert.Good(await a.RegisterAsync(KeyA, aptpl: true));
        Assert.Equal(0xB1, PrInitiator.Good(await a.RunAsync(PrCdbs.In(PrCdbs.ReportCapabilities)))[3]); // PTPL_A
        PrAssert.Good(await a.OutAsync(PrCdbs.Register, KeyA, KeyB, aptpl: false));
        Assert.Equal(0xB0, PrInitiator.Good(await a.RunAsync(PrCdbs.In(PrCdbs.ReportCapabilities)))[3]);
    }

    [Fact]
    public async Task Clear_removes_everything_and_tells_every_other_registrant_reservations_preempted()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        var c = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await b.RegisterAsync(KeyB));
        PrAssert.Good(await a.ReserveAsync(KeyA, PrType.ExclusiveAccess));
        var generation = await a.GenerationAsync();

        PrAssert.Conflict(await c.OutAsync(PrCdbs.Clear, 0), "CLEAR from an unregistered nexus");
        PrAssert.Conflict(await b.OutAsync(PrCdbs.Clear, KeyA), "CLEAR with another nexus's key");
        PrAssert.Good(await b.OutAsync(PrCdbs.Clear, KeyB));

        await c.ExpectKeysAsync(generation + 1);
        Assert.Null(await c.ReadReservationAsync());
        await a.ExpectUnitAttentionAsync(0x2A, 0x03);
        await a.ExpectNoUnitAttentionAsync();
        await b.ExpectNoUnitAttentionAsync(); // it sent the CLEAR
        await c.ExpectNoUnitAttentionAsync(); // never registered
        PrAssert.Good(await c.RunAsync(Cdbs.Write10(0, 1), new byte[512]), "no reservation is left");
    }

    [Theory]
    [InlineData(PrType.WriteExclusiveRegistrantsOnly, true)]
    [InlineData(PrType.ExclusiveAccessAllRegistrants, true)]
    [InlineData(PrType.WriteExclusive, false)]
    [InlineData(PrType.ExclusiveAccess, false)]
    public async Task Release_tells_the_other_registrants_only_for_registrants_types(PrType type, bool told)
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        var c = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await b.RegisterAsync(KeyB));
        PrAssert.Good(await a.ReserveAsync(KeyA, type));
        PrAssert.Good(await a.ReleaseAsync(KeyA, type));
        if (told)
            await b.ExpectUnitAttentionAsync(0x2A, 0x04);
        await b.ExpectNoUnitAttentionAsync();
        await a.ExpectNoUnitAttentionAsync();
        await c.ExpectNoUnitAttentionAsync();
    }

    [Theory]
    [InlineData(PrType.WriteExclusive, false)]
    [InlineData(PrType.ExclusiveAccess, false)]
    [InlineData(PrType.WriteExclusiveRegistrantsOnly, false)]
    [InlineData(PrType.ExclusiveAccessRegistrantsOnly, false)]
    [InlineData(PrType.WriteExclusiveAllRegistrants, true)]
    [InlineData(PrType.ExclusiveAccessAllRegistrants, true)]
    public async Task Unregistering_the_holder_releases_unless_all_registrants_hold_it(PrType type, bool shared)
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await b.RegisterAsync(KeyB));
        PrAssert.Good(await a.ReserveAsync(KeyA, type));
        PrAssert.Good(await a.UnregisterAsync(KeyA));
        if (shared)
        {
            Assert.Equal((0UL, type), await a.ReadReservationAsync());
            await b.ExpectNoUnitAttentionAsync();
            // The last registrant going releases it.
            PrAssert.Good(await b.UnregisterAsync(KeyB));
            Assert.Null(await a.ReadReservationAsync());
        }
        else
        {
            Assert.Null(await a.ReadReservationAsync());
            // SPC-4 5.13.11.3: registrants only types tell the remaining registrants.
            if (type is PrType.WriteExclusiveRegistrantsOnly or PrType.ExclusiveAccessRegistrantsOnly)
                await b.ExpectUnitAttentionAsync(0x2A, 0x04);
            await b.ExpectNoUnitAttentionAsync();
            PrAssert.Good(await b.RunAsync(Cdbs.Write10(1, 1), new byte[512]));
        }
        await a.ExpectNoUnitAttentionAsync();
    }

    [Fact]
    public async Task Preempt_without_a_reservation_removes_the_named_registrations()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        var b2 = await lun.InitiatorAsync();
        var c = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await b.RegisterAsync(KeyB));
        PrAssert.Good(await b2.RegisterAsync(KeyB)); // two nexuses may share a key
        PrAssert.Good(await c.RegisterAsync(KeyC));
        var generation = await a.GenerationAsync();

        PrAssert.Conflict(await a.OutAsync(PrCdbs.Preempt, KeyA, KeyD, PrType.ExclusiveAccess), "SARK matching no registration");
        PrAssert.InvalidFieldInParameterList(await a.OutAsync(PrCdbs.Preempt, KeyA, 0, PrType.ExclusiveAccess), "SARK zero without an all registrants reservation");
        PrAssert.Conflict(await a.OutAsync(PrCdbs.Preempt, KeyB, KeyC, PrType.ExclusiveAccess), "RESERVATION KEY not the issuer's");
        Assert.Equal(generation, await a.GenerationAsync());

        PrAssert.Good(await a.OutAsync(PrCdbs.Preempt, KeyA, KeyB, PrType.ExclusiveAccess));
        await a.ExpectKeysAsync(generation + 1, KeyA, KeyC);
        Assert.Null(await a.ReadReservationAsync()); // TYPE is ignored when no reservation is preempted
        await b.ExpectUnitAttentionAsync(0x2A, 0x05);
        await b2.ExpectUnitAttentionAsync(0x2A, 0x05);
        await c.ExpectNoUnitAttentionAsync();
        await a.ExpectNoUnitAttentionAsync();
    }

    [Fact]
    public async Task Preempting_the_holder_moves_the_reservation_and_tells_who_lost_what()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        var c = await lun.InitiatorAsync();
        var d = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await b.RegisterAsync(KeyB));
        PrAssert.Good(await c.RegisterAsync(KeyC));
        PrAssert.Good(await b.ReserveAsync(KeyB, PrType.WriteExclusiveRegistrantsOnly));
        var generation = await a.GenerationAsync();

        // fence_scsi style: A takes the reservation from B, with a new type.
        PrAssert.Good(await a.OutAsync(PrCdbs.Preempt, KeyA, KeyB, PrType.ExclusiveAccessRegistrantsOnly));
        Assert.Equal((KeyA, PrType.ExclusiveAccessRegistrantsOnly), await d.ReadReservationAsync());
        await d.ExpectKeysAsync(generation + 1, KeyA, KeyC);
        await b.ExpectUnitAttentionAsync(0x2A, 0x05); // lost its registration and the reservation
        await b.ExpectNoUnitAttentionAsync();
        await c.ExpectUnitAttentionAsync(0x2A, 0x04); // kept its key, but the type changed
        await d.ExpectNoUnitAttentionAsync();
        await a.ExpectNoUnitAttentionAsync();
        PrAssert.Conflict(await b.RunAsync(Cdbs.Write10(2, 1), new byte[512]), "the preempted initiator is fenced");
        PrAssert.Good(await c.RunAsync(Cdbs.Write10(2, 1), new byte[512]), "a registrant under a registrants only type");

        // Same type again: no RESERVATIONS RELEASED for anyone.
        PrAssert.Good(await c.OutAsync(PrCdbs.Preempt, KeyC, KeyA, PrType.ExclusiveAccessRegistrantsOnly));
        Assert.Equal((KeyC, PrType.ExclusiveAccessRegistrantsOnly), await d.ReadReservationAsync());
        await a.ExpectUnitAttentionAsync(0x2A, 0x05);
        await c.ExpectNoUnitAttentionAsync();
    }

    [Fact]
    public async Task The_holder_may_preempt_itself_to_change_the_type_and_keeps_its_registration()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var a2 = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await a2.RegisterAsync(KeyA));
        PrAssert.Good(await b.RegisterAsync(KeyB));
        PrAssert.Good(await a.ReserveAsync(KeyA, PrType.WriteExclusive));
        PrAssert.Good(await a.OutAsync(PrCdbs.Preempt, KeyA, KeyA, PrType.ExclusiveAccess));
        await a2.ExpectUnitAttentionAsync(0x2A, 0x05);
        await b.ExpectUnitAttentionAsync(0x2A, 0x04);
        await a.ExpectNoUnitAttentionAsync();
        Assert.Equal((KeyA, PrType.ExclusiveAccess), await b.ReadReservationAsync());
        Assert.Equal(new ulong[] { KeyA, KeyB }, (await b.ReadKeysAsync()).Keys); // the other nexus with key A went
    }

    [Fact]
    public async Task Preempting_an_all_registrants_reservation()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        var c = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await b.RegisterAsync(KeyB));
        PrAssert.Good(await c.RegisterAsync(KeyC));
        PrAssert.Good(await b.ReserveAsync(KeyB, PrType.WriteExclusiveAllRegistrants));

        // A non-zero key removes just those registrations; the reservation stays.
        PrAssert.Good(await a.OutAsync(PrCdbs.Preempt, KeyA, KeyC, PrType.ExclusiveAccess));
        Assert.Equal((0UL, PrType.WriteExclusiveAllRegistrants), await a.ReadReservationAsync());
        Assert.Equal(new ulong[] { KeyA, KeyB }, (await a.ReadKeysAsync()).Keys);
        await c.ExpectUnitAttentionAsync(0x2A, 0x05);

        // Key zero removes everyone else and makes the issuer the holder of the new type.
        PrAssert.Good(await a.OutAsync(PrCdbs.Preempt, KeyA, 0, PrType.ExclusiveAccess));
        Assert.Equal((KeyA, PrType.ExclusiveAccess), await a.ReadReservationAsync());
        Assert.Equal(new ulong[] { KeyA }, (await a.ReadKeysAsync()).Keys);
        await b.ExpectUnitAttentionAsync(0x2A, 0x05);
        await b.ExpectNoUnitAttentionAsync();
        await a.ExpectNoUnitAttentionAsync();
        PrAssert.Conflict(await b.RunAsync(Cdbs.Read10(0, 1)));
    }

    [Fact]
    public async Task Preempt_and_abort_aborts_the_preempted_nexuses_tasks_and_no_others()
    {
        var device = new HoldingDevice();
        await using var h = new ScsiHarness(device);
        var a = new PrInitiator(h, ScsiHarness.NewNexus("iqn.2026-11.org.handler-runtime:abort-a"));
        var b = new PrInitiator(h, ScsiHarness.NewNexus("iqn.2026-11.org.handler-runtime:abort-b"));
        var c = new PrInitiator(h, ScsiHarness.NewNexus("iqn.2026-11.org.handler-runtime:abort-c"));
        foreach (var i in new[] { a, b, c })
            await h.ClearUnitAttentionAsync(i.Nexus);
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await b.RegisterAsync(KeyB));
        PrAssert.Good(await c.RegisterAsync(KeyC));
        PrAssert.Good(await b.ReserveAsync(KeyB, PrType.WriteExclusive));

        var readB = b.RunAsync(Cdbs.Read10(0, 1));
        var readC = c.RunAsync(Cdbs.Read10(1, 1));
        var readA = a.RunAsync(Cdbs.Read10(2, 1));
        await device.WaitForReadsAsync(3);

        PrAssert.Good(await a.OutAsync(PrCdbs.PreemptAndAbort, KeyA, KeyB, PrType.WriteExclusive));
        Assert.Equal(ScsiStatus.TaskAborted, (await readB).Status);
        Assert.False(readA.IsCompleted || readC.IsCompleted, "tasks of nexuses that were not preempted keep running");
        device.Release(2);
        PrAssert.Good(await readA);
        PrAssert.Good(await readC);
        Assert.Equal((KeyA, PrType.WriteExclusive), await c.ReadReservationAsync());
        await b.ExpectUnitAttentionAsync(0x2A, 0x05);
        await c.ExpectNoUnitAttentionAsync(); // still registered, and the type did not change

        // PREEMPT without abort leaves the victim's tasks alone.
        var readC2 = c.RunAsync(Cdbs.Read10(3, 1));
        await device.WaitForReadsAsync(4);
        PrAssert.Good(await a.OutAsync(PrCdbs.Preempt, KeyA, KeyC, PrType.WriteExclusive));
        await Task.Delay(50);
        Assert.False(readC2.IsCompleted);
        device.Release(1);
        PrAssert.Good(await readC2);
    }

    [Fact]
    public async Task Register_and_move_hands_the_reservation_to_another_initiator_port()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        var c = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await a.ReserveAsync(KeyA, PrType.ExclusiveAccess));
        var generation = await a.GenerationAsync();
        var toB = PrCdbs.IscsiTransportId(b.Nexus.InitiatorPort); // format 01b: the port

        PrAssert.Conflict(await c.MoveAsync(0, KeyC, 1, toB), "from an unregistered nexus");
        PrAssert.Conflict(await a.MoveAsync(KeyB, KeyC, 1, toB), "with the wrong key");
        PrAssert.InvalidFieldInParameterList(await a.MoveAsync(KeyA, 0, 1, toB), "SARK zero");
        PrAssert.InvalidFieldInParameterList(await a.MoveAsync(KeyA, KeyB, 1, PrCdbs.IscsiTransportId(a.Nexus.InitiatorPort)), "to itself");
        PrAssert.InvalidFieldInParameterList(await a.MoveAsync(KeyA, KeyB, 1, PrCdbs.IscsiTransportId(a.Nexus.InitiatorName)), "to its own initiator device");
        PrAssert.InvalidFieldInParameterList(await a.MoveAsync(KeyA, KeyB, 77, toB), "to a relative target port that does not exist");
        PrAssert.InvalidFieldInParameterList(await a.MoveAsync(KeyA, KeyB, 1, PrCdbs.IscsiTransportId(b.Nexus.InitiatorPort, protocol: 6)), "a SAS TransportID on an iSCSI port");
        var malformed = PrCdbs.IscsiTransportId(b.Nexus.InitiatorPort);
        malformed[0] = 0xC5; // format 11b
        PrAssert.InvalidFieldInParameterList(await a.MoveAsync(KeyA, KeyB, 1, malformed), "format 11b");
        var cut = PrCdbs.MoveParameters(KeyA, KeyB, 1, toB);
        PrAssert.ParameterListLengthError(await a.RunAsync(PrCdbs.Out(PrCdbs.RegisterAndMove, 0, cut.Length - 4), cut[..^4]), "TransportID longer than the list");
        Assert.Equal(generation, await a.GenerationAsync());

        PrAssert.Good(await a.MoveAsync(KeyA, KeyB, 1, toB));
        Assert.Equal((KeyB, PrType.ExclusiveAccess), await c.ReadReservationAsync());
        await c.ExpectKeysAsync(generation + 1, KeyA, KeyB);
        PrAssert.Good(await b.RunAsync(Cdbs.Write10(5, 1), new byte[512]), "the new holder");
        PrAssert.Conflict(await a.RunAsync(Cdbs.Read10(5, 1)), "the old holder is only registered now");
        PrAssert.Conflict(await a.MoveAsync(KeyA, KeyC, 1, PrCdbs.IscsiTransportId(c.Nexus.InitiatorPort)), "from a registrant that does not hold the reservation");

        // Back to A, whose existing registration takes the new key; UNREG drops B's.
        PrAssert.Good(await b.MoveAsync(KeyB, KeyD, 1, PrCdbs.IscsiTransportId(a.Nexus.InitiatorPort), unregister: true));
        Assert.Equal((KeyD, PrType.ExclusiveAccess), await c.ReadReservationAsync());
        await c.ExpectKeysAsync(generation + 2, KeyD);
        PrAssert.Conflict(await b.RunAsync(Cdbs.Read10(5, 1)));
    }

    [Fact]
    public async Task Register_and_move_to_an_initiator_device_covers_every_port_of_it()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        const string node = "iqn.2026-11.org.handler-runtime:moved-node";
        var port1 = await lun.InitiatorAsync(node);
        var port2 = await lun.InitiatorAsync(node);
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await a.ReserveAsync(KeyA, PrType.WriteExclusive));
        PrAssert.Good(await a.MoveAsync(KeyA, KeyB, 1, PrCdbs.IscsiTransportId(node), unregister: true)); // format 00b
        Assert.Equal((KeyB, PrType.WriteExclusive), await a.ReadReservationAsync());
        PrAssert.Good(await port1.RunAsync(Cdbs.Write10(0, 1), new byte[512]));
        PrAssert.Good(await port2.RunAsync(Cdbs.Write10(0, 1), new byte[512]));
        PrAssert.Conflict(await a.RunAsync(Cdbs.Write10(0, 1), new byte[512]));
        var (_, status) = await a.ReadFullStatusAsync();
        var only = Assert.Single(status);
        Assert.Equal((KeyB, true, (byte)0, node), (only.Key, only.Holder, only.TransportIdFormat, only.Name));
    }

    [Theory]
    [InlineData(PrType.WriteExclusiveAllRegistrants)]
    [InlineData(PrType.ExclusiveAccessAllRegistrants)]
    public async Task An_all_registrants_reservation_cannot_be_moved(PrType type)
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await a.ReserveAsync(KeyA, type));
        PrAssert.Conflict(await a.MoveAsync(KeyA, KeyB, 1, PrCdbs.IscsiTransportId(b.Nexus.InitiatorPort)));
        PrAssert.Good(await a.ReleaseAsync(KeyA, type));
        PrAssert.Conflict(await a.MoveAsync(KeyA, KeyB, 1, PrCdbs.IscsiTransportId(b.Nexus.InitiatorPort)), "no reservation to move");
    }

    [Fact]
    public async Task Spec_i_pt_registers_the_named_initiators_too_all_or_none()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        const string node = "iqn.2026-11.org.handler-runtime:spec-node";
        var e1 = await lun.InitiatorAsync(node);
        var e2 = await lun.InitiatorAsync(node);
        var f = await lun.InitiatorAsync();
        var generation = await a.GenerationAsync();

        // A TransportID cut short by TRANSPORTID PARAMETER DATA LENGTH, then one longer than the list.
        var p = PrCdbs.Parameters(0, KeyA, transportIds: PrCdbs.IscsiTransportId(b.Nexus.InitiatorPort));
        BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(24), 20);
        PrAssert.InvalidFieldInParameterList(await a.RunAsync(PrCdbs.Out(PrCdbs.Register, 0, p.Length), p));
        BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(24), 400);
        PrAssert.ParameterListLengthError(await a.RunAsync(PrCdbs.Out(PrCdbs.Register, 0, p.Length), p));
        // Atomic: one already registered fails them all.
        PrAssert.Good(await f.RegisterAsync(KeyD));
        PrAssert.InvalidFieldInParameterList(await a.OutAsync(PrCdbs.Register, 0, KeyA, transportIds: [PrCdbs.IscsiTransportId(b.Nexus.InitiatorPort), PrCdbs.IscsiTransportId(f.Nexus.InitiatorPort)]));
        PrAssert.InvalidFieldInParameterList(await a.OutAsync(PrCdbs.Register, 0, KeyA, transportIds: [PrCdbs.IscsiTransportId(b.Nexus.InitiatorPort), PrCdbs.IscsiTransportId(b.Nexus.InitiatorPort)]), "the same port twice");
        Assert.Equal(new ulong[] { KeyD }, (await a.ReadKeysAsync()).Keys);

        PrAssert.Good(await a.OutAsync(PrCdbs.Register, 0, KeyA, transportIds: [PrCdbs.IscsiTransportId(b.Nexus.InitiatorPort), PrCdbs.IscsiTransportId(node)]));
        await a.ExpectKeysAsync(generation + 2, KeyD, KeyA, KeyA, KeyA);
        // B was registered for it: it can reserve with the key at once; both of E's ports are registrants.
        PrAssert.Good(await b.ReserveAsync(KeyA, PrType.ExclusiveAccessRegistrantsOnly));
        PrAssert.Good(await e1.RunAsync(Cdbs.Read10(0, 1)));
        PrAssert.Good(await e2.RunAsync(Cdbs.Read10(0, 1)));
        PrAssert.Good(await f.RunAsync(Cdbs.Read10(0, 1)));
        var (_, status) = await a.ReadFullStatusAsync();
        Assert.Equal(4, status.Length);
        var ofNode = Assert.Single(status, s => s.Name == node);
        Assert.Equal((byte)0, ofNode.TransportIdFormat);
        Assert.Equal(b.Nexus.InitiatorPort, Assert.Single(status, s => s.Holder).Name);

        // SPEC_I_PT from a registered nexus is an invalid field.
        PrAssert.InvalidFieldInParameterList(await a.OutAsync(PrCdbs.Register, KeyA, KeyB, transportIds: PrCdbs.IscsiTransportId("iqn.2026-11.org.handler-runtime:x")));
    }

    [Fact]
    public async Task All_tg_pt_registers_the_initiator_port_through_every_target_port()
    {
        await using var lun = await NewLunAsync();
        var nexuses = new HandlerRuntime.Scsi.NexusTable();
        var port2 = new HandlerRuntime.Scsi.TargetPort(ScsiHarness.Port.TargetName + ",t,0x0002", ScsiHarness.Port.TargetName, 2, 2, 5);
        const string initiator = "iqn.2026-11.org.handler-runtime:multipath";
        var viaPort1 = await lun.AttachAsync(nexuses.Get(initiator + ",i,0x400000000001", initiator, ScsiHarness.Port));
        var viaPort2 = await lun.AttachAsync(nexuses.Get(initiator + ",i,0x400000000001", initiator, port2));
        var other1 = await lun.AttachAsync(nexuses.Get(initiator + ",i,0x400000000002", initiator, ScsiHarness.Port));
        var other2 = await lun.AttachAsync(nexuses.Get(initiator + ",i,0x400000000002", initiator, port2));

        // Without ALL_TG_PT the registration is for one target port only.
        PrAssert.Good(await other1.RegisterAsync(KeyB));
        PrAssert.Conflict(await other2.ReserveAsync(KeyB, PrType.WriteExclusive), "not registered through port 2");

        PrAssert.Good(await viaPort1.RegisterAsync(KeyA, allTargetPorts: true));
        PrAssert.Good(await viaPort2.ReserveAsync(KeyA, PrType.ExclusiveAccess));
        var (_, status) = await other1.ReadFullStatusAsync();
        var all = Assert.Single(status, s => s.Key == KeyA);
        Assert.True(all.AllTargetPorts && all.Holder);
        var one = Assert.Single(status, s => s.Key == KeyB);
        Assert.False(one.AllTargetPorts);
        Assert.Equal((ushort)1, one.RelativeTargetPort);
        // The holder is the nexus through port 2; the same port through port 1 is a registrant, not the holder.
        PrAssert.Good(await viaPort2.RunAsync(Cdbs.Read10(0, 1)));
        PrAssert.Conflict(await viaPort1.RunAsync(Cdbs.Read10(0, 1)));

        // Moving the reservation to another target port of the same target.
        PrAssert.Good(await viaPort2.MoveAsync(KeyA, KeyC, 2, PrCdbs.IscsiTransportId(other2.Nexus.InitiatorPort)));
        PrAssert.Good(await other2.RunAsync(Cdbs.Read10(0, 1)));
        PrAssert.Conflict(await other1.RunAsync(Cdbs.Read10(0, 1)));
    }

    [Fact]
    public async Task Read_full_status_describes_every_registration()
    {
        await using var lun = await NewLunAsync();
        var a = await lun.InitiatorAsync();
        var b = await lun.InitiatorAsync();
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await b.RegisterAsync(KeyB));
        PrAssert.Good(await b.ReserveAsync(KeyB, PrType.WriteExclusiveRegistrantsOnly));
        var (generation, status) = await a.ReadFullStatusAsync();
        Assert.Equal(await a.GenerationAsync(), generation);
        Assert.Equal(
            [
                new FullStatus(KeyA, false, false, 0, 1, 1, 5, a.Nexus.InitiatorPort),
                new FullStatus(KeyB, false, true, (byte)PrType.WriteExclusiveRegistrantsOnly, 1, 1, 5, b.Nexus.InitiatorPort),
            ], status);

        // All registrants: every registrant is a holder and shows the type.
        PrAssert.Good(await b.ReleaseAsync(KeyB, PrType.WriteExclusiveRegistrantsOnly));
        await a.ExpectUnitAttentionAsync(0x2A, 0x04);
        PrAssert.Good(await a.ReserveAsync(KeyA, PrType.ExclusiveAccessAllRegistrants));
        Assert.All((await a.ReadFullStatusAsync()).Descriptors, s => Assert.Equal((true, (byte)PrType.ExclusiveAccessAllRegistrants), (s.Holder, s.ScopeType)));

        // Truncation keeps the ADDITIONAL LENGTH of the whole list.
        var cut = PrInitiator.Good(await a.RunAsync(PrCdbs.In(PrCdbs.ReadFullStatus, allocation: 30)));
        Assert.Equal(30, cut.Length);
        Assert.True(BinaryPrimitives.ReadUInt32BigEndian(cut.AsSpan(4)) > 100);
    }

    [Fact]
    public async Task Concurrent_registrations_from_many_nexuses_are_all_kept_and_counted()
    {
        await using var lun = await NewLunAsync();
        var initiators = new List<PrInitiator>();
        for (var i = 0; i < 24; i++)
            initiators.Add(await lun.InitiatorAsync());
        var generation = await initiators[0].GenerationAsync();
        var work = initiators.Select(async (p, i) =>
        {
            PrAssert.Good(await p.RegisterAsync(0x1000UL + (ulong)i));
            PrAssert.Good(await p.RunAsync(PrCdbs.In(PrCdbs.ReadFullStatus)));
            PrAssert.Good(await p.OutAsync(PrCdbs.Register, 0x1000UL + (ulong)i, 0x2000UL + (ulong)i));
        });
        await Task.WhenAll(work);
        var (g, keys) = await initiators[0].ReadKeysAsync();
        Assert.Equal(generation + 48, g);
        Assert.Equal(Enumerable.Range(0, 24).Select(i => 0x2000UL + (ulong)i).Order(), keys.Order());
    }

    [Fact]
    public async Task A_handler_hook_sees_no_command_the_reservation_forbids()
    {
        var device = new VendorCommandDevice();
        await using var h = new ScsiHarness(device);
        var a = new PrInitiator(h, ScsiHarness.NewNexus("iqn.2026-11.org.handler-runtime:hook-a"));
        var b = new PrInitiator(h, ScsiHarness.NewNexus("iqn.2026-11.org.handler-runtime:hook-b"));
        await h.ClearUnitAttentionAsync(a.Nexus);
        await h.ClearUnitAttentionAsync(b.Nexus);
        byte[] vendor = [0xC0, 0, 0, 0, 0, 0];
        PrAssert.Good(await b.RunAsync(vendor));
        PrAssert.Good(await a.RegisterAsync(KeyA));
        PrAssert.Good(await a.ReserveAsync(KeyA, PrType.WriteExclusive));
        PrAssert.Conflict(await b.RunAsync(vendor), "a command only the handler knows is judged as a write");
        PrAssert.Good(await a.RunAsync(vendor));
        Assert.Equal(2, device.Handled);
    }

    /// <summary>A device whose reads wait until the test releases them (or the task is aborted).</summary>
    private sealed class HoldingDevice : IBlockDevice
    {
        private readonly SemaphoreSlim gate = new(0);
        private int started;

        public DeviceGeometry Geometry { get; } = DeviceGeometry.FromSize(1 << 20, 512);
        public DeviceCapabilities Capabilities => DeviceCapabilities.Write;
        public ThreadModel ThreadModel => ThreadModel.Parallel;

        public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref started);
            await gate.WaitAsync(cancellationToken);
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken) => default;

        public void Release(int reads) => gate.Release(reads);

        public async Task WaitForReadsAsync(int n)
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (Volatile.Read(ref started) < n)
            {
                Assert.True(DateTime.UtcNow < deadline, $"only {started} of {n} reads started");
                await Task.Delay(5);
            }
        }

        public ValueTask DisposeAsync() => default;
    }

    /// <summary>A device with a full-control hook that answers a vendor-specific opcode.</summary>
    private sealed class VendorCommandDevice : IBlockDevice, IScsiCommandHandler
    {
        public int Handled;

        public DeviceGeometry Geometry { get; } = DeviceGeometry.FromSize(1 << 20, 512);
        public DeviceCapabilities Capabilities => DeviceCapabilities.Write;

        public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken) => default;

        public ValueTask<ScsiCommandOutcome> HandleCommandAsync(IScsiCommand command, CancellationToken cancellationToken)
        {
            if (command.Cdb.Span[0] != 0xC0)
                return ValueTask.FromResult(ScsiCommandOutcome.NotHandled);
            Interlocked.Increment(ref Handled);
            return ValueTask.FromResult(ScsiCommandOutcome.Good(0));
        }

        public ValueTask DisposeAsync() => default;
    }
}
