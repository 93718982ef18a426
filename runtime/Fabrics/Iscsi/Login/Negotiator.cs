using System.Globalization;

namespace HandlerRuntime.Fabrics.Iscsi.Login;

/// <summary>
/// Operational text negotiation (RFC 7143 6.2, 13): for every key the initiator offers,
/// the answer this target gives and the value both then use. Numeric keys take the
/// minimum (maximum for DefaultTime2Wait), booleans AND or OR as the standard says, lists
/// the first of the initiator's values the target accepts. Leading-only keys on a
/// secondary connection are answered Irrelevant and change nothing.
/// </summary>
internal sealed class Negotiator(IscsiOptions options, SessionParameters session, ConnectionParameters connection, bool leading)
{
    private static readonly HashSet<string> LeadingOnly = new(StringComparer.Ordinal)
    {
        "MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength", "FirstBurstLength", "DefaultTime2Wait",
        "DefaultTime2Retain", "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder", "ErrorRecoveryLevel",
    };

    private bool firstBurstOffered;

    /// <summary>Whether the target has declared its MaxRecvDataSegmentLength yet.</summary>
    public bool DeclaredMaxRecv { get; set; }

    /// <summary>Answers one operational key; returns false when the key is not operational (the caller handles it).</summary>
    public bool TryAnswer(string key, string value, List<KeyValuePair<string, string>> reply, bool discovery)
    {
        if (!leading && LeadingOnly.Contains(key))
        {
            reply.Add(new(key, "Irrelevant"));
            return true;
        }
        switch (key)
        {
            case "HeaderDigest":
                reply.Add(new(key, PickDigest(value, options.HeaderDigest, out connection.HeaderDigest)));
                return true;
            case "DataDigest":
                reply.Add(new(key, PickDigest(value, options.DataDigest, out connection.DataDigest)));
                return true;
            case "MaxRecvDataSegmentLength":
                if (Number(value, 512, 16777215) is { } mrdsl)
                    connection.InitiatorMaxRecvDataSegmentLength = mrdsl;
                else
                    reply.Add(new(key, "Reject"));
                DeclareMaxRecv(reply);
                return true;
            case "MaxConnections":
                Min(key, value, 1, 65535, options.MaxConnections, v => session.MaxConnections = v, reply);
                return true;
            case "InitialR2T":
                // OR: Yes wins.
                Boolean(key, value, reply, offered => session.InitialR2T = offered || options.InitialR2T);
                return true;
            case "ImmediateData":
                // AND: No wins.
                Boolean(key, value, reply, offered => session.ImmediateData = offered && options.ImmediateData);
                return true;
            case "MaxBurstLength":
                Min(key, value, 512, 16777215, options.MaxBurstLength, v => session.MaxBurstLength = v, reply);
                if (session.FirstBurstLength > session.MaxBurstLength)
                    session.FirstBurstLength = session.MaxBurstLength;
                return true;
            case "FirstBurstLength":
                firstBurstOffered = true;
                Min(key, value, 512, 16777215, Math.Min(options.FirstBurstLength, session.MaxBurstLength), v => session.FirstBurstLength = v, reply);
                return true;
            case "DefaultTime2Wait":
                if (Number(value, 0, 3600) is { } wait)
                {
                    session.DefaultTime2Wait = Math.Max(wait, options.DefaultTime2Wait);
                    reply.Add(new(key, session.DefaultTime2Wait.ToString(CultureInfo.InvariantCulture)));
                }
                else
                    reply.Add(new(key, "Reject"));
                return true;
            case "DefaultTime2Retain":
                Min(key, value, 0, 3600, options.DefaultTime2Retain, v => session.DefaultTime2Retain = v, reply);
                return true;
            case "MaxOutstandingR2T":
                Min(key, value, 1, 65535, options.MaxOutstandingR2T, v => session.MaxOutstandingR2T = v, reply);
                return true;
            case "DataPDUInOrder":
                // OR, and this target wants Yes: the result is always Yes.
                Boolean(key, value, reply, _ => session.DataPduInOrder = true);
                return true;
            case "DataSequenceInOrder":
                Boolean(key, value, reply, _ => session.DataSequenceInOrder = true);
                return true;
            case "ErrorRecoveryLevel":
                Min(key, value, 0, 2, 0, v => session.ErrorRecoveryLevel = v, reply);
                return true;
            case "IFMarker" or "OFMarker":
                // RFC 3720 markers, dropped by RFC 7143; never used here.
                reply.Add(new(key, "No"));
                return true;
            case "IFMarkInt" or "OFMarkInt":
                reply.Add(new(key, "Irrelevant"));
                return true;
            case "RDMAExtensions":
                reply.Add(new(key, "No"));
                return true;
            case "TaskReporting":
                reply.Add(new(key, "RFC3720"));
                return true;
            case "iSCSIProtocolLevel":
                Min(key, value, 0, 31, 1, _ => { }, reply);
                return true;
            default:
                return false;
        }
    }

    /// <summary>Settles values the initiator did not offer but that depend on others (RFC 7143 13.14).</summary>
    public void Finish()
    {
        if (!firstBurstOffered && session.FirstBurstLength > session.MaxBurstLength)
            session.FirstBurstLength = session.MaxBurstLength;
    }

    public void DeclareMaxRecv(List<KeyValuePair<string, string>> reply)
    {
        if (DeclaredMaxRecv)
            return;
        DeclaredMaxRecv = true;
        connection.TargetMaxRecvDataSegmentLength = options.MaxRecvDataSegmentLength;
        reply.Add(new("MaxRecvDataSegmentLength", options.MaxRecvDataSegmentLength.ToString(CultureInfo.InvariantCulture)));
    }

    private static string PickDigest(string offered, IReadOnlyList<string> accepted, out bool crc)
    {
        foreach (var v in offered.Split(','))
            foreach (var a in accepted)
                if (v.Equals(a, StringComparison.OrdinalIgnoreCase))
                {
                    crc = a == "CRC32C";
                    return a;
                }
        crc = false;
        return "Reject";
    }

    private static int? Number(string value, int min, int max)
    {
        long v;
        if (value.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            if (!long.TryParse(value.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out v))
                return null;
        }
        else if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out v))
            return null;
        return v >= min && v <= max ? (int)v : null;
    }

    private static void Min(string key, string value, int min, int max, int ours, Action<int> set, List<KeyValuePair<string, string>> reply)
    {
        if (Number(value, min, max) is not { } offered)
        {
            reply.Add(new(key, "Reject"));
            return;
        }
        var result = Math.Min(offered, ours);
        set(result);
        reply.Add(new(key, result.ToString(CultureInfo.InvariantCulture)));
    }

    private static void Boolean(string key, string value, List<KeyValuePair<string, string>> reply, Func<bool, bool> decide)
    {
        bool offered;
        if (value == "Yes")
            offered = true;
        else if (value == "No")
            offered = false;
        else
        {
            reply.Add(new(key, "Reject"));
            return;
        }
        reply.Add(new(key, decide(offered) ? "Yes" : "No"));
    }
}
