using System.Text;

namespace HandlerRuntime.Scsi.Reservations;

/// <summary>
/// An iSCSI TransportID (SPC-4 7.6.4.6): format 00b names an initiator device (its iSCSI
/// name), format 01b an initiator port (<c>name,i,0xISID</c>). Both are a null-terminated
/// UTF-8 string padded with zeros to a multiple of four bytes, at least 20.
/// </summary>
/// <param name="InitiatorName">The iSCSI name of the initiator device.</param>
/// <param name="InitiatorPort">The initiator port name for format 01b, null for format 00b.</param>
internal readonly record struct TransportId(string InitiatorName, string? InitiatorPort)
{
    public const byte IscsiProtocolId = 5;
    private const string Separator = ",i,0x";
    private const int MinimumLength = 24;

    /// <summary>Describes an initiator: its port when known, else the device.</summary>
    public static TransportId Of(NexusPattern nexus) => new(nexus.InitiatorName, nexus.InitiatorPort);

    /// <summary>The registration pattern for this initiator through one target port (or all, when <paramref name="targetPort"/> is null).</summary>
    public NexusPattern Through(string? targetPort, ushort relativeTargetPortId, byte protocolId)
        => new(InitiatorName, InitiatorPort, targetPort, targetPort is null ? (ushort)0 : relativeTargetPortId, protocolId);

    /// <summary>
    /// Parses the TransportID at the start of <paramref name="data"/>. Returns its length in
    /// bytes, or -1 when it is not a well-formed iSCSI TransportID.
    /// </summary>
    public static int TryParse(ReadOnlySpan<byte> data, out TransportId id)
    {
        id = default;
        if (data.Length < MinimumLength)
            return -1;
        var format = data[0] >> 6;
        if (format > 1 || (data[0] & 0x30) != 0 || (data[0] & 0x0F) != IscsiProtocolId || data[1] != 0)
            return -1;
        var additional = Cdb.U16(data, 2);
        if (additional < MinimumLength - 4 || additional % 4 != 0 || 4 + additional > data.Length)
            return -1;
        var body = data.Slice(4, additional);
        var end = body.IndexOf((byte)0);
        if (end <= 0 || body[end..].ContainsAnyExcept((byte)0))
            return -1;
        string text;
        try
        {
            text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(body[..end]);
        }
        catch (DecoderFallbackException)
        {
            return -1;
        }
        var separator = text.IndexOf(Separator, StringComparison.OrdinalIgnoreCase);
        if (format == 0)
        {
            if (separator >= 0)
                return -1;
            id = new TransportId(text, null);
        }
        else
        {
            if (separator <= 0 || !IsIsid(text.AsSpan(separator + Separator.Length)))
                return -1;
            id = new TransportId(text[..separator], text);
        }
        return 4 + additional;
    }

    /// <summary>Bytes <see cref="Write"/> produces.</summary>
    public int Length
    {
        get
        {
            var text = Encoding.UTF8.GetByteCount(InitiatorPort ?? InitiatorName) + 1;
            return 4 + Math.Max(MinimumLength - 4, (text + 3) & ~3);
        }
    }

    /// <summary>Writes the TransportID (format 01b when the port is known, else 00b); returns its length.</summary>
    public int Write(Span<byte> destination, byte protocolId)
    {
        var length = Length;
        var d = destination[..length];
        d.Clear();
        d[0] = (byte)((InitiatorPort is null ? 0x00 : 0x40) | (protocolId & 0x0F));
        Cdb.Put16(d, 2, length - 4);
        Encoding.UTF8.GetBytes(InitiatorPort ?? InitiatorName, d[4..]);
        return length;
    }

    private static bool IsIsid(ReadOnlySpan<char> s)
    {
        if (s.Length != 12)
            return false;
        foreach (var c in s)
            if (!char.IsAsciiHexDigit(c))
                return false;
        return true;
    }
}
