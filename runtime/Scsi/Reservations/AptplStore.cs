using System.Collections.Immutable;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace HandlerRuntime.Scsi.Reservations;

/// <summary>
/// Persists a logical unit's persistent reservation state while APTPL is in force (SPC-4
/// 5.13.5), as JSON in the LUN's state directory. A save is atomic and durable before the
/// command that caused it completes: a temporary file is written and fsynced, renamed over
/// the old one, and the directory fsynced, so a crash leaves either the old state or the new.
/// </summary>
internal sealed partial class AptplStore(string directory)
{
    public const string FileName = "persistent-reservations.json";
    private const int FormatVersion = 1;

    public string FilePath { get; } = Path.Combine(directory, FileName);

    /// <summary>The saved state, or null when none was saved. Throws <see cref="InvalidDataException"/> for a file it cannot trust.</summary>
    public ReservationState? Load()
    {
        if (!File.Exists(FilePath))
            return null;
        try
        {
            return Parse(JsonNode.Parse(File.ReadAllText(FilePath)) as JsonObject ?? throw new InvalidDataException("not a JSON object"));
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or OverflowException or InvalidDataException or ArgumentException)
        {
            throw new InvalidDataException($"{FilePath} holds no readable persistent reservation state ({e.Message}); restore it or remove it to start without registrations.", e);
        }
    }

    /// <summary>Writes <paramref name="state"/> durably, replacing what was saved.</summary>
    public void Save(ReservationState state)
    {
        DurableFile.Replace(FilePath, Encoding.UTF8.GetBytes(Serialize(state).ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"));
    }

    /// <summary>Removes the saved state (APTPL turned off): after a power loss nothing is restored.</summary>
    public void Delete() => DurableFile.Delete(FilePath);

    private static JsonObject Serialize(ReservationState state)
    {
        var registrations = new JsonArray();
        foreach (var r in state.Registrations)
        {
            var o = Describe(r.Nexus);
            o["key"] = $"0x{r.Key:x16}";
            registrations.Add(o);
        }
        return new JsonObject
        {
            ["version"] = FormatVersion,
            ["generation"] = state.Generation,
            ["registrations"] = registrations,
            ["reservation"] = state.Reservation is { } res
                ? new JsonObject { ["type"] = (int)res.Type, ["holder"] = Describe(res.Holder) }
                : null,
        };
    }

    private static JsonObject Describe(NexusPattern n) => new()
    {
        ["initiator"] = n.InitiatorName,
        ["initiatorPort"] = n.InitiatorPort,
        ["targetPort"] = n.TargetPort,
        ["relativeTargetPortId"] = n.RelativeTargetPortId,
        ["protocolId"] = n.ProtocolId,
    };

    private static ReservationState Parse(JsonObject o)
    {
        if ((int?)o["version"] != FormatVersion)
            throw new InvalidDataException($"unknown format version {o["version"]?.ToJsonString() ?? "(none)"}");
        var registrations = ImmutableArray.CreateBuilder<Registration>();
        foreach (var node in o["registrations"] as JsonArray ?? throw new InvalidDataException("no registrations array"))
        {
            var r = node as JsonObject ?? throw new InvalidDataException("a registration is not an object");
            var keyText = (string?)r["key"] ?? throw new InvalidDataException("a registration has no key");
            var key = ulong.Parse(keyText.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? keyText[2..] : keyText, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (key == 0)
                throw new InvalidDataException("a registration has key zero");
            var nexus = ParseNexus(r);
            if (registrations.Any(existing => existing.Nexus.Overlaps(nexus)))
                throw new InvalidDataException($"two registrations cover {nexus}");
            registrations.Add(new Registration(nexus, key));
        }
        PersistentReservation? reservation = null;
        if (o["reservation"] is JsonObject res)
        {
            var type = (int?)res["type"] ?? throw new InvalidDataException("the reservation has no type");
            if (!PersistentReservationTypes.IsDefined(type))
                throw new InvalidDataException($"reservation type {type} is not a persistent reservation type");
            reservation = new PersistentReservation(ParseNexus(res["holder"] as JsonObject ?? throw new InvalidDataException("the reservation has no holder")), (PersistentReservationType)type);
            if (!PersistentReserveOut.StillHeld(reservation, registrations.ToImmutable()))
                throw new InvalidDataException("the reservation's holder is not registered");
        }
        return new ReservationState((uint?)o["generation"] ?? 0, true, registrations.ToImmutable(), reservation);
    }

    private static NexusPattern ParseNexus(JsonObject o)
        => new((string?)o["initiator"] is { Length: > 0 } name ? name : throw new InvalidDataException("an initiator has no name"),
            (string?)o["initiatorPort"], (string?)o["targetPort"], (ushort?)o["relativeTargetPortId"] ?? 0, (byte?)o["protocolId"] ?? TransportId.IscsiProtocolId);
}
