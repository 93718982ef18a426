using System.Buffers.Binary;

namespace HandlerRuntime.Fabrics.Tcmu;

/// <summary>What the kernel tells a TCMU daemon over netlink, and what it answers (enum tcmu_genl_cmd).</summary>
internal enum TcmuCommandKind : byte
{
    Unspecified = 0,
    AddedDevice = 1,
    RemovedDevice = 2,
    ReconfigDevice = 3,
    AddedDeviceDone = 4,
    RemovedDeviceDone = 5,
    ReconfigDeviceDone = 6,
    SetFeatures = 7,
}

/// <summary>One device event from the kernel.</summary>
/// <param name="Kind">ADDED, REMOVED or RECONFIG_DEVICE.</param>
/// <param name="UioName">The UIO name, <c>tcm-user/&lt;hba&gt;/&lt;name&gt;/&lt;subtype&gt;/&lt;cfg&gt;</c>.</param>
/// <param name="Minor">The UIO minor (<c>/dev/uio&lt;minor&gt;</c>).</param>
/// <param name="DeviceId">LIO's dev_index, echoed in the reply.</param>
/// <param name="DevConfig">RECONFIG: the new dev_config (trimmed).</param>
/// <param name="DevSize">RECONFIG: the new size in bytes.</param>
/// <param name="WriteCache">RECONFIG: the new emulate_write_cache.</param>
internal sealed record TcmuDeviceEvent(TcmuCommandKind Kind, string UioName, uint Minor, uint DeviceId, string? DevConfig = null, ulong? DevSize = null, bool? WriteCache = null)
{
    public TcmuCommandKind ReplyKind => Kind switch
    {
        TcmuCommandKind.AddedDevice => TcmuCommandKind.AddedDeviceDone,
        TcmuCommandKind.RemovedDevice => TcmuCommandKind.RemovedDeviceDone,
        _ => TcmuCommandKind.ReconfigDeviceDone,
    };
}

/// <summary>
/// The <c>TCM-USER</c> generic netlink family (version 2, multicast group <c>config</c>): device
/// events from the kernel, the <c>*_DONE</c> replies, and SET_FEATURES, by which this daemon
/// promises those replies so that configfs writes wait for the outcome and fail with it.
/// </summary>
internal sealed class TcmuNetlink : IDisposable
{
    public const string FamilyName = "TCM-USER";
    public const string GroupName = "config";
    public const byte Version = 2;

    // enum tcmu_genl_attr
    public const ushort AttrDevice = 1;
    public const ushort AttrMinor = 2;
    public const ushort AttrPad = 3;
    public const ushort AttrDevConfig = 4;
    public const ushort AttrDevSize = 5;
    public const ushort AttrWriteCache = 6;
    public const ushort AttrCmdStatus = 7;
    public const ushort AttrDeviceId = 8;
    public const ushort AttrSupportsKernelCmdReply = 9;

    private readonly GenericNetlinkSocket socket;
    private readonly byte[] receiveBuffer = new byte[GenericNetlinkSocket.ReceiveBufferSize];

    private TcmuNetlink(GenericNetlinkSocket socket, ushort familyId)
    {
        this.socket = socket;
        FamilyId = familyId;
    }

    public ushort FamilyId { get; }

    public int Fd => socket.Fd;

    /// <summary>Opens the socket and resolves the family; null when target_core_user has not registered it.</summary>
    public static TcmuNetlink? Open(out uint configGroup)
    {
        var socket = GenericNetlinkSocket.Open();
        try
        {
            if (socket.ResolveFamily(FamilyName) is not var (id, groups))
            {
                socket.Dispose();
                configGroup = 0;
                return null;
            }
            if (!groups.TryGetValue(GroupName, out configGroup))
                throw new IOException($"netlink family {FamilyName} has no multicast group '{GroupName}'");
            return new TcmuNetlink(socket, id);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public void Subscribe(uint group) => socket.JoinGroup(group);

    /// <summary>
    /// SET_FEATURES(SUPP_KERN_CMD_REPLY=1), acknowledged: from now on the kernel waits for this
    /// daemon's replies (module-wide, and it outlives the daemon). An old kernel that does not know
    /// the command answers EOPNOTSUPP, and events are then fire-and-forget: returns false.
    /// </summary>
    public bool RequestCommandReplies()
    {
        Span<byte> request = stackalloc byte[64];
        var seq = socket.NextSequence();
        var w = new NetlinkMessageWriter(request, FamilyId, NetlinkHeader.FlagRequest | NetlinkHeader.FlagAck, seq, (byte)TcmuCommandKind.SetFeatures, Version);
        w.U8(AttrSupportsKernelCmdReply, 1);
        if (socket.Send(w.Finish()) is var e and not 0)
            throw new IOException($"netlink SET_FEATURES failed: {Libc.Describe(e)}");
        var deadline = Environment.TickCount64 + 2000;
        while (Environment.TickCount64 < deadline)
        {
            var n = socket.ReceiveWithin(receiveBuffer, (int)Math.Max(1, deadline - Environment.TickCount64));
            foreach (var m in NetlinkMessage.Split(receiveBuffer.AsSpan(0, n)))
            {
                if (m.Type != NetlinkHeader.TypeError || m.Sequence != seq)
                    continue;
                if (m.Error == 0)
                    return true;
                if (m.Error == -Libc.EOPNOTSUPP || m.Error == -Libc.EINVAL)
                    return false;
                throw new IOException($"netlink SET_FEATURES refused: {Libc.Describe(-m.Error)}");
            }
        }
        throw new IOException("netlink SET_FEATURES was not acknowledged within 2 s");
    }

    /// <summary>Reads every waiting datagram and hands its device events to <paramref name="onEvent"/>; replies and acks are dropped.</summary>
    public void ReceiveAll(Action<TcmuDeviceEvent> onEvent, Action<string> onIgnored)
    {
        int n;
        while ((n = socket.Receive(receiveBuffer)) > 0)
            foreach (var m in NetlinkMessage.Split(receiveBuffer.AsSpan(0, n)))
            {
                if (m.Type == NetlinkHeader.TypeError)
                {
                    // The kernel refuses a reply it did not wait for (reply mode off) with ENODEV.
                    if (m.Error != 0)
                        onIgnored($"the kernel answered a reply with {Libc.Describe(-m.Error)}");
                    continue;
                }
                if (m.Type != FamilyId)
                    continue;
                if (Parse(m) is { } e)
                    onEvent(e);
                else
                    onIgnored($"netlink command {m.Command} (version {m.Version}) ignored");
            }
    }

    /// <summary>Decodes ADDED/REMOVED/RECONFIG_DEVICE; null for anything else or a message missing its attributes.</summary>
    public static TcmuDeviceEvent? Parse(NetlinkMessage m)
    {
        var kind = (TcmuCommandKind)m.Command;
        if (kind is not (TcmuCommandKind.AddedDevice or TcmuCommandKind.RemovedDevice or TcmuCommandKind.ReconfigDevice))
            return null;
        var a = m.Attributes;
        if (a.String(AttrDevice) is not { } name || a.U32(AttrMinor) is not { } minor)
            return null;
        var id = a.U32(AttrDeviceId) ?? 0;
        return new TcmuDeviceEvent(kind, name, minor, id,
            a.String(AttrDevConfig)?.TrimEnd('\n', '\0'), a.U64(AttrDevSize), a.U8(AttrWriteCache) is { } wc ? wc != 0 : null);
    }

    /// <summary>Sends the *_DONE reply for <paramref name="e"/>: 0 or a negative errno, which fails the configfs write that caused it.</summary>
    public int Reply(TcmuDeviceEvent e, int status)
    {
        Span<byte> reply = stackalloc byte[64];
        var w = new NetlinkMessageWriter(reply, FamilyId, NetlinkHeader.FlagRequest, socket.NextSequence(), (byte)e.ReplyKind, Version);
        w.S32(AttrCmdStatus, status);
        w.U32(AttrDeviceId, e.DeviceId);
        return socket.Send(w.Finish());
    }

    /// <summary>Builds an event message as the kernel sends it (for tests of the decoder).</summary>
    internal static byte[] Encode(TcmuDeviceEvent e, ushort familyId)
    {
        var buffer = new byte[1024];
        var w = new NetlinkMessageWriter(buffer, familyId, 0, 0, (byte)e.Kind, Version);
        w.String(AttrDevice, e.UioName);
        w.U32(AttrMinor, e.Minor);
        w.U32(AttrDeviceId, e.DeviceId);
        if (e.DevConfig is { } cfg)
            w.String(AttrDevConfig, cfg);
        if (e.WriteCache is { } wc)
            w.U8(AttrWriteCache, wc ? (byte)1 : (byte)0);
        var msg = w.Finish().ToArray();
        if (e.DevSize is not { } size)
            return msg;
        // u64 attributes come after a PAD attribute in the kernel's messages (nla_put_u64_64bit).
        var withSize = new byte[msg.Length + 4 + 12];
        msg.CopyTo(withSize, 0);
        var at = msg.Length;
        BinaryPrimitives.WriteUInt16LittleEndian(withSize.AsSpan(at), 4);
        BinaryPrimitives.WriteUInt16LittleEndian(withSize.AsSpan(at + 2), AttrPad);
        BinaryPrimitives.WriteUInt16LittleEndian(withSize.AsSpan(at + 4), 12);
        BinaryPrimitives.WriteUInt16LittleEndian(withSize.AsSpan(at + 6), AttrDevSize);
        BinaryPrimitives.WriteUInt64LittleEndian(withSize.AsSpan(at + 8), size);
        BinaryPrimitives.WriteUInt32LittleEndian(withSize, (uint)withSize.Length);
        return withSize;
    }

    public void Dispose() => socket.Dispose();
}
