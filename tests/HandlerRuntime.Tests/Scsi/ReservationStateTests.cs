using HandlerRuntime.Scsi;
using HandlerRuntime.Scsi.Reservations;

namespace HandlerRuntime.Tests.Scsi;

/// <summary>The pieces under the state machine: nexus patterns, TransportIDs, and the per-state standing cache.</summary>
public sealed class ReservationStateTests
{
    private static readonly NexusTable Nexuses = new();
    private static readonly TargetPort Port1 = ScsiHarness.Port;
    private static readonly TargetPort Port2 = new(ScsiHarness.Port.TargetName + ",t,0x0002", ScsiHarness.Port.TargetName, 2, 2, 5);
    private const string Name = "iqn.2026-11.org.handler-runtime:state";

    private static ItNexus Nexus(string isid, TargetPort port) => Nexuses.Get($"{Name},i,0x{isid}", Name, port);

    [Fact]
    public void Patterns_match_cover_and_overlap_by_name_without_regard_to_case()
    {
        var exact = NexusPattern.Of(Nexus("400000000001", Port1));
        var allPorts = exact.ThroughAllTargetPorts();
        var device = new NexusPattern(Name.ToUpperInvariant(), null, Port1.Name, 1, 5);
        var otherPort = NexusPattern.Of(Nexus("400000000002", Port1));

        Assert.True(exact.Matches(Nexus("400000000001", Port1)));
        Assert.False(exact.Matches(Nexus("400000000001", Port2)));
        Assert.True(allPorts.Matches(Nexus("400000000001", Port2)));
        Assert.True(device.Matches(Nexus("400000000002", Port1)));
        Assert.False(device.Matches(Nexus("400000000002", Port2)));
        Assert.True(new NexusPattern(Name, $"{Name},i,0x400000000001".ToUpperInvariant(), Port1.Name.ToUpperInvariant(), 1, 5).Matches(Nexus("400000000001", Port1)));

        Assert.True(allPorts.Covers(exact));
        Assert.False(exact.Covers(allPorts));
        Assert.True(device.Covers(exact));
        Assert.False(device.Covers(allPorts));
        Assert.True(device.Overlaps(allPorts));
        Assert.False(exact.Overlaps(otherPort));
        Assert.True(device.Overlaps(otherPort));
    }

    [Theory]
    [InlineData("iqn.2026-11.org.handler-runtime:a")]
    [InlineData("iqn.2026-11.org.handler-runtime:a,i,0x23d000000001")]
    [InlineData("iqn.1994-05.com.example:a-much-longer-initiator-name-that-needs-more-than-the-minimum")]
    public void Transport_ids_round_trip_in_both_formats(string text)
    {
        var port = text.Contains(",i,0x") ? text : null;
        var name = port is null ? text : text[..text.IndexOf(",i,0x", StringComparison.Ordinal)];
        var id = new TransportId(name, port);
        var bytes = new byte[id.Length];
        Assert.Equal(bytes.Length, id.Write(bytes, 5));
        Assert.Equal(0, bytes.Length % 4);
        Assert.True(bytes.Length >= 24);
        Assert.Equal(PrCdbs.IscsiTransportId(text), bytes);
        Assert.Equal(bytes.Length, TransportId.TryParse(bytes, out var parsed));
        Assert.Equal(id, parsed);
    }

    [Theory]
    [InlineData("short")]
    [InlineData("protocol")]
    [InlineData("format")]
    [InlineData("length")]
    [InlineData("unterminated")]
    [InlineData("isid")]
    [InlineData("separator in 00b")]
    public void Malformed_transport_ids_are_refused(string what)
    {
        var t = PrCdbs.IscsiTransportId("iqn.2026-11.org.handler-runtime:a,i,0x23d000000001");
        switch (what)
        {
            case "short": t = t[..20]; break;
            case "protocol": t[0] = 0x46; break;
            case "format": t[0] = 0x85; break;
            case "length": t[3] = 0x13; break;
            case "unterminated": Array.Fill(t, (byte)'a', 4, t.Length - 4); break;
            case "isid": t = PrCdbs.IscsiTransportId("iqn.2026-11.org.handler-runtime:a,i,0x23d00000001"); break;
            case "separator in 00b": t[0] = 0x05; break;
        }
        Assert.Equal(-1, TransportId.TryParse(t, out _));
    }

    [Fact]
    public void A_new_state_does_not_inherit_the_standings_of_the_old_one()
    {
        var a = Nexus("400000000a0a", Port1);
        var b = Nexus("400000000b0b", Port1);
        var before = ReservationState.Empty with
        {
            Registrations = [new Registration(NexusPattern.Of(a), 1), new Registration(NexusPattern.Of(b), 2)],
            Reservation = new PersistentReservation(NexusPattern.Of(a), PersistentReservationType.ExclusiveAccess),
        };
        Assert.Equal(new NexusStanding(true, true), before.StandingOf(a));
        Assert.Equal(new NexusStanding(true, false), before.StandingOf(b));
        var after = before with { Reservation = new PersistentReservation(NexusPattern.Of(b), PersistentReservationType.ExclusiveAccess) };
        Assert.Equal(new NexusStanding(true, false), after.StandingOf(a));
        Assert.Equal(new NexusStanding(true, true), after.StandingOf(b));
        Assert.Equal(new NexusStanding(true, true), before.StandingOf(a));
        Assert.True(ReservationRule.ConflictsWithPersistentReservation(after, a, PersistentAccess.Read));
        Assert.False(ReservationRule.ConflictsWithPersistentReservation(before, a, PersistentAccess.Write));
    }
}
