using System.Globalization;
using System.Text;
using HandlerRuntime.Fabrics.Iscsi.Login;
using HandlerRuntime.Fabrics.Iscsi.Protocol;
using HandlerRuntime.Fabrics.Iscsi.Sessions;
using HandlerRuntime.Scsi;

namespace HandlerRuntime.Fabrics.Iscsi.Connections;

// The login phase (RFC 7143 6.3): security negotiation (CHAP or none), operational
// negotiation, then the move to full feature phase, with the session found or made.
internal sealed partial class IscsiConnection
{
    private const int SecurityStage = 0, OperationalStage = 1, FullFeatureStage = 3;
    private const int MaxLoginText = 64 * 1024;

    private sealed class LoginState
    {
        public bool First = true;
        public string? InitiatorName;
        public bool Discovery;
        public ScsiTarget? Target;
        public ulong Isid;
        public ushort Tsih;
        public uint CmdSN;
        public uint Itt;
        public IscsiSession? Existing;
        public SessionParameters Session = new();
        public Negotiator Negotiator = null!;
        public string? AuthMethod;
        public Chap? Chap;
        public bool Authenticated;
        public List<byte> Pending = new();
        public int Stage = -1;
    }

    /// <summary>Runs the login; true when the connection is in full feature phase.</summary>
    private async Task<bool> LoginAsync()
    {
        using var timeout = new CancellationTokenSource(Options.LoginTimeout);
        await using var onTimeout = timeout.Token.Register(() =>
        {
            if (Session is null)
            {
                Log.Warning("iSCSI {Remote}: login not finished within {Seconds} s; closing", RemoteEndPoint, Options.LoginTimeout.TotalSeconds);
                Close("login timeout");
            }
        });
        var state = new LoginState();
        while (true)
        {
            await ReadHeaderAsync(digests: false);
            if (Bhs.Opcode(header) != Opcode.LoginRequest)
                throw new ProtocolException(RejectReason.ProtocolError, $"{Bhs.Opcode(header)} PDU during login", headerTrusted: false);
            if (dataLength > MaxLoginText || state.Pending.Count + dataLength > MaxLoginText)
                throw new ProtocolException(RejectReason.ProtocolError, "login text too long", headerTrusted: false);
            var data = new byte[dataLength];
            await ReadSegmentAsync(data, digests: false);
            var outcome = Step(state, data);
            if (outcome == LoginOutcome.Continue)
                continue;
            if (outcome == LoginOutcome.Failed)
            {
                // The failure response is queued; let it out, then end the connection.
                await StopSenderAsync();
                Close("login refused");
                return false;
            }
            // Digests start with the first full feature phase PDU in each direction: login PDUs
            // are read and written without them (ControlPdu.NoDigests), whatever was negotiated.
            return !IsClosed;
        }
    }

    private enum LoginOutcome { Continue, Failed, FullFeature }

    private LoginOutcome Step(LoginState s, byte[] data)
    {
        var h = header.AsSpan();
        var transit = Bhs.Login.Transit(h);
        var more = Bhs.Login.Continue(h);
        var csg = Bhs.Login.CurrentStage(h);
        var nsg = Bhs.Login.NextStage(h);
        var versionMax = Bhs.Login.VersionMax(h);
        var versionMin = Bhs.Login.VersionMin(h);
        var isid = Bhs.Login.Isid(h);
        var tsih = Bhs.Login.Tsih(h);
        var itt = Bhs.InitiatorTaskTag(h);
        var cid = Bhs.Login.Cid(h);
        var cmdSN = Bhs.CmdSN(h);

        if (s.First)
        {
            s.Isid = isid;
            s.Tsih = tsih;
            s.CmdSN = cmdSN;
            s.Itt = itt;
            Cid = cid;
            if (versionMin > 0)
                return Fail(s, LoginStatus.UnsupportedVersion, $"iSCSI version {versionMin}-{versionMax} is not supported (only 0)");
        }
        else if (isid != s.Isid || tsih != s.Tsih || cid != Cid)
        {
            return Fail(s, LoginStatus.InitiatorError, "ISID, TSIH or CID changed during login");
        }
        if (transit && nsg <= csg || csg == 2 || csg == FullFeatureStage || (transit && nsg == 2))
            return Fail(s, LoginStatus.InitiatorError, $"invalid stage transition {csg}->{nsg}");
        if (s.Stage >= 0 && csg < s.Stage)
            return Fail(s, LoginStatus.InitiatorError, "login went back to an earlier stage");
        s.Stage = csg;

        s.Pending.AddRange(data);
        if (more)
        {
            // C bit: the initiator's text continues; acknowledge with an empty response.
            if (transit)
                return Fail(s, LoginStatus.InitiatorError, "C and T bits both set");
            Respond(s, transit: false, csg, nsg, [], LoginStatus.Success);
            return LoginOutcome.Continue;
        }
        var keys = new List<KeyValuePair<string, string>>();
        if (!TextKeys.TryParse(s.Pending.ToArray(), keys, out var textError))
            return Fail(s, LoginStatus.InitiatorError, "login text malformed: " + textError);
        s.Pending.Clear();

        var reply = new List<KeyValuePair<string, string>>();
        if (s.First)
        {
            s.First = false;
            if (FirstRequest(s, keys) is { } failure)
                return failure;
            if (!s.Discovery)
                reply.Add(new("TargetPortalGroupTag", IscsiFabric.PortalGroupTag.ToString(CultureInfo.InvariantCulture)));
        }

        var requireChap = s.Target?.Access.Chap is not null;
        string? chapName = null, chapResponse = null, chapMutualId = null, chapMutualChallenge = null;
        foreach (var (key, value) in keys)
        {
            switch (key)
            {
                case "InitiatorName" or "InitiatorAlias" or "TargetName" or "SessionType":
                    continue; // declarative, taken from the first request
                case "AuthMethod":
                    if (csg != SecurityStage)
                        return Fail(s, LoginStatus.InitiatorError, "AuthMethod outside the security stage");
                    var offered = value.Split(',');
                    if (requireChap)
                        s.AuthMethod = offered.Contains("CHAP") ? "CHAP" : null;
                    else
                        s.AuthMethod = offered.Contains("None") ? "None" : null;
                    reply.Add(new(key, s.AuthMethod ?? "Reject"));
                    if (s.AuthMethod is null)
                        return Fail(s, LoginStatus.AuthenticationFailure,
                            requireChap ? $"target {s.Target!.Name} requires CHAP; the initiator offered AuthMethod={value}" : $"the initiator offered AuthMethod={value}, and this target has no CHAP configured", reply);
                    if (s.AuthMethod == "CHAP")
                        s.Chap = new Chap(s.Target!.Access.Chap!);
                    continue;
                case "CHAP_A":
                    if (s.Chap is null || s.Chap.State != Chap.Step.AwaitAlgorithm)
                        return Fail(s, LoginStatus.InitiatorError, "CHAP_A out of turn");
                    if (s.Chap.Begin(value, reply) is { } chapError)
                        return Fail(s, LoginStatus.AuthenticationFailure, chapError, reply);
                    continue;
                case "CHAP_N": chapName = value; continue;
                case "CHAP_R": chapResponse = value; continue;
                case "CHAP_I": chapMutualId = value; continue;
                case "CHAP_C": chapMutualChallenge = value; continue;
            }
            if (s.Negotiator.TryAnswer(key, value, reply, s.Discovery))
                continue;
            reply.Add(new(key, "NotUnderstood"));
        }

        if (chapName is not null || chapResponse is not null)
        {
            if (s.Chap is null || s.Chap.State != Chap.Step.AwaitResponse)
                return Fail(s, LoginStatus.InitiatorError, "CHAP_N/CHAP_R out of turn");
            if (s.Chap.Verify(chapName, chapResponse, chapMutualId, chapMutualChallenge, reply) is { } chapError)
                return Fail(s, LoginStatus.AuthenticationFailure, chapError);
            s.Authenticated = true;
            Log.Debug("iSCSI {Remote}: CHAP user {User} authenticated", RemoteEndPoint, chapName);
        }
        else if (chapMutualId is not null || chapMutualChallenge is not null)
        {
            return Fail(s, LoginStatus.InitiatorError, "CHAP_I/CHAP_C without CHAP_N/CHAP_R");
        }

        // Security: nothing moves on until the initiator is authenticated where the target demands it.
        if (requireChap && !s.Authenticated)
        {
            if (csg != SecurityStage || (transit && s.AuthMethod is null))
                return Fail(s, LoginStatus.AuthenticationFailure, $"target {s.Target!.Name} requires CHAP authentication");
            transit = false; // still mid-CHAP
        }
        if (csg == SecurityStage && transit && s.AuthMethod is null && !requireChap)
            s.AuthMethod = "None";

        if (csg == OperationalStage || (transit && nsg == FullFeatureStage))
            s.Negotiator.DeclareMaxRecv(reply);

        if (transit && nsg == FullFeatureStage)
        {
            s.Negotiator.Finish();
            if (Enter(s) is { } failure)
                return failure;
            Respond(s, transit: true, csg, nsg, reply, LoginStatus.Success);
            return LoginOutcome.FullFeature;
        }
        Respond(s, transit, csg, nsg, reply, LoginStatus.Success);
        return LoginOutcome.Continue;
    }

    /// <summary>The first login request names the initiator, the session type and the target.</summary>
    private LoginOutcome? FirstRequest(LoginState s, List<KeyValuePair<string, string>> keys)
    {
        string? Key(string name) => keys.FirstOrDefault(k => k.Key == name).Value;
        s.InitiatorName = Key("InitiatorName");
        if (string.IsNullOrEmpty(s.InitiatorName))
            return Fail(s, LoginStatus.MissingParameter, "the login has no InitiatorName");
        var type = Key("SessionType") ?? "Normal";
        if (type is not ("Normal" or "Discovery"))
            return Fail(s, LoginStatus.SessionTypeNotSupported, $"SessionType={type} is not supported");
        s.Discovery = type == "Discovery";
        if (!s.Discovery)
        {
            var targetName = Key("TargetName");
            if (string.IsNullOrEmpty(targetName))
                return Fail(s, LoginStatus.MissingParameter, "a normal session login has no TargetName");
            s.Target = Fabric.Targets.Find(targetName);
            if (s.Target is null)
                return Fail(s, LoginStatus.TargetNotFound, $"target {targetName} does not exist here");
            if (!s.Target.Access.Allows(s.InitiatorName))
                return Fail(s, LoginStatus.AuthorizationFailure, $"initiator {s.InitiatorName} is not in the ACL of {s.Target.Name}");
        }
        if (s.Tsih != 0)
        {
            s.Existing = Fabric.Sessions.Find(s.Tsih);
            if (s.Existing is null || s.Existing.Isid != s.Isid || s.Existing.InitiatorName != s.InitiatorName || s.Existing.Target != s.Target || s.Existing.IsClosed)
                return Fail(s, LoginStatus.SessionDoesNotExist, $"no session with TSIH {s.Tsih} for this initiator");
            s.Session = s.Existing.Parameters;
            Parameters.HeaderDigest = Parameters.DataDigest = false;
        }
        else if (Fabric.Sessions.Count >= Options.MaxSessions && Fabric.Sessions.FindSame(s.InitiatorName, s.Isid, s.Target) is null)
        {
            return Fail(s, LoginStatus.OutOfResources, $"the session limit ({Options.MaxSessions}) is reached");
        }
        s.Negotiator = new Negotiator(Options, s.Session, Parameters, leading: s.Existing is null);
        return null;
    }

    /// <summary>Binds the connection to its session: new, reinstated (same ISID) or joined (TSIH given).</summary>
    private LoginOutcome? Enter(LoginState s)
    {
        IscsiSession session;
        if (s.Existing is { } existing)
        {
            if (!existing.TryAddConnection(this, out var replaced))
                return Fail(s, LoginStatus.TooManyConnections, $"the session already has its {existing.Parameters.MaxConnections} connection(s)");
            replaced?.Close("connection reinstated");
            session = existing;
        }
        else
        {
            EndNexusesThePeerAlreadyDropped(s.InitiatorName!, s.Target);
            if (Fabric.Sessions.FindSame(s.InitiatorName!, s.Isid, s.Target) is { } old)
            {
                // Session reinstatement (RFC 7143 6.3.5): the old session ends, its tasks are aborted.
                Log.Information("iSCSI {Remote}: reinstating session of {Initiator} ISID 0x{Isid:x12}", RemoteEndPoint, s.InitiatorName, s.Isid);
                old.EndNexus();
                old.CloseAll("session reinstated");
                Fabric.Sessions.Remove(old);
            }
            session = Fabric.CreateSession(s.Session, s.InitiatorName!, s.Isid, s.Target, s.CmdSN);
            session.TryAddConnection(this, out _);
            s.Tsih = session.Tsih;
            Log.Information("iSCSI session {Initiator} (ISID 0x{Isid:x12}, TSIH {Tsih}) logged in to {Target} from {Remote}; digests {Header}/{Data}",
                s.InitiatorName, s.Isid, session.Tsih, s.Target?.Name ?? "discovery", RemoteEndPoint,
                Parameters.HeaderDigest ? "CRC32C" : "None", Parameters.DataDigest ? "CRC32C" : "None");
        }
        Session = session;
        return null;
    }

    /// <summary>
    /// Events of different connections are handled on different threads, so an initiator that
    /// drops a session and logs in again at once (a millisecond on loopback) could otherwise
    /// reach its LU before the old connection's end is processed, and still meet that session's
    /// PREVENT or RESERVE. A new session of the initiator first ends the nexus of any session of
    /// its whose every connection the peer has already closed (the FIN is in the kernel).
    /// </summary>
    private void EndNexusesThePeerAlreadyDropped(string initiatorName, Scsi.ScsiTarget? target)
    {
        foreach (var other in Fabric.Sessions.All)
            if (other.Target == target && string.Equals(other.InitiatorName, initiatorName, StringComparison.OrdinalIgnoreCase) && other.AllConnectionsClosedByPeer())
                other.EndNexus();
    }

    private LoginOutcome Fail(LoginState s, LoginStatus status, string why, List<KeyValuePair<string, string>>? reply = null)
    {
        Log.Warning("iSCSI {Remote}: login of {Initiator} refused ({Status:X4}): {Reason}", RemoteEndPoint, s.InitiatorName ?? "?", (ushort)status, why);
        Respond(s, transit: false, s.Stage < 0 ? 0 : s.Stage, 0, reply ?? [], status);
        return LoginOutcome.Failed;
    }

    private void Respond(LoginState s, bool transit, int csg, int nsg, List<KeyValuePair<string, string>> reply, LoginStatus status)
    {
        var text = new List<byte>();
        foreach (var (k, v) in reply)
            TextKeys.Append(text, k, v);
        var pdu = ControlPdu.Create(Opcode.LoginResponse, 0, s.Itt, text.ToArray());
        var h = pdu.Header.AsSpan();
        Bhs.Login.PutStages(h, transit, csg, nsg);
        Bhs.Login.PutVersions(h, max: 0, active: 0);
        Bhs.Login.PutIsid(h, s.Isid);
        Bhs.Login.PutTsih(h, status == LoginStatus.Success && transit && nsg == FullFeatureStage ? s.Tsih : s.Existing?.Tsih ?? 0);
        // The session's window once there is one; before, the one the first CmdSN opens.
        Bhs.PutWindow(h, (s.Existing ?? Session)?.Window() ?? new CmdSNWindow(s.CmdSN, s.CmdSN + (uint)Options.QueueDepth - 1));
        Bhs.Login.PutStatus(h, status);
        pdu.NoDigests = true;
        pdu.FillWindow = false;
        Sender.Enqueue(pdu);
    }
}
