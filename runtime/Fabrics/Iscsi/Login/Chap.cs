using System.Security.Cryptography;
using HandlerRuntime.Scsi;

namespace HandlerRuntime.Fabrics.Iscsi.Login;

/// <summary>
/// CHAP for iSCSI (RFC 7143 12.1.3, RFC 1994): the target challenges, the initiator
/// answers with H(id || secret || challenge); with mutual CHAP the initiator then
/// challenges the target the same way. MD5 (CHAP_A=5) plus the SHA algorithms that
/// later initiators offer (6 SHA-1, 7 SHA-256, 8 SHA3-256).
/// </summary>
internal sealed class Chap(ChapCredentials credentials)
{
    private int algorithm;
    private byte identifier;
    private byte[] challenge = [];

    public enum Step { AwaitAlgorithm, AwaitResponse, Done }

    public Step State { get; private set; } = Step.AwaitAlgorithm;

    /// <summary>Picks the first algorithm of the initiator's CHAP_A list we support; answers CHAP_A, CHAP_I, CHAP_C.</summary>
    public string? Begin(string offered, List<KeyValuePair<string, string>> reply)
    {
        foreach (var a in offered.Split(','))
        {
            if (int.TryParse(a, out var n) && DigestLength(n) > 0)
            {
                algorithm = n;
                identifier = (byte)RandomNumberGenerator.GetInt32(256);
                challenge = RandomNumberGenerator.GetBytes(Math.Max(16, DigestLength(n)));
                reply.Add(new("CHAP_A", n.ToString()));
                reply.Add(new("CHAP_I", identifier.ToString()));
                reply.Add(new("CHAP_C", "0x" + Convert.ToHexStringLower(challenge)));
                State = Step.AwaitResponse;
                return null;
            }
        }
        reply.Add(new("CHAP_A", "Reject"));
        return $"the initiator offered no CHAP algorithm this target supports (CHAP_A={offered})";
    }

    /// <summary>Checks CHAP_N/CHAP_R and, when the initiator asks, answers its challenge. Returns an error or null.</summary>
    public string? Verify(string? name, string? response, string? mutualId, string? mutualChallenge, List<KeyValuePair<string, string>> reply)
    {
        if (name is null || response is null)
            return "the initiator did not send CHAP_N and CHAP_R";
        if (!TryDecode(response, out var r))
            return "CHAP_R is not hex (0x...) or base64 (0b...)";
        var expected = Hash(algorithm, identifier, credentials.Secret, challenge);
        if (name != credentials.User || !CryptographicOperations.FixedTimeEquals(r, expected))
            return $"CHAP response for user '{name}' does not match the configured credentials";
        if (mutualId is not null || mutualChallenge is not null)
        {
            if (mutualId is null || mutualChallenge is null)
                return "mutual CHAP needs both CHAP_I and CHAP_C";
            if (credentials.MutualUser is null || credentials.MutualSecret is null)
                return "the initiator asks for mutual CHAP but the target has no mutualUser/mutualSecret configured";
            if (!int.TryParse(mutualId, out var id) || id is < 0 or > 255)
                return "CHAP_I is not a number from 0 to 255";
            if (!TryDecode(mutualChallenge, out var c) || c.Length == 0 || c.Length > 1024)
                return "CHAP_C is not valid";
            if (c.AsSpan().SequenceEqual(challenge))
                return "the initiator's CHAP challenge repeats the target's (reflection attack)";
            reply.Add(new("CHAP_N", credentials.MutualUser));
            reply.Add(new("CHAP_R", "0x" + Convert.ToHexStringLower(Hash(algorithm, (byte)id, credentials.MutualSecret, c))));
        }
        State = Step.Done;
        return null;
    }

    private static int DigestLength(int algorithm) => algorithm switch
    {
        5 => 16,
        6 => 20,
        7 => 32,
        8 when SHA3_256.IsSupported => 32,
        _ => 0,
    };

    private static byte[] Hash(int algorithm, byte id, string secret, byte[] challenge)
    {
        var s = System.Text.Encoding.UTF8.GetBytes(secret);
        var input = new byte[1 + s.Length + challenge.Length];
        input[0] = id;
        s.CopyTo(input, 1);
        challenge.CopyTo(input, 1 + s.Length);
        return algorithm switch
        {
            5 => MD5.HashData(input),
            6 => SHA1.HashData(input),
            7 => SHA256.HashData(input),
            _ => SHA3_256.HashData(input),
        };
    }

    /// <summary>Decodes a CHAP binary value: 0x hex or 0b base64 (RFC 7143 6.1).</summary>
    internal static bool TryDecode(string text, out byte[] bytes)
    {
        bytes = [];
        try
        {
            if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            {
                var hex = text[2..];
                if (hex.Length % 2 == 1)
                    hex = "0" + hex;
                bytes = Convert.FromHexString(hex);
                return true;
            }
            if (text.StartsWith("0b", StringComparison.OrdinalIgnoreCase))
            {
                bytes = Convert.FromBase64String(text[2..]);
                return true;
            }
        }
        catch (FormatException)
        {
        }
        return false;
    }
}
