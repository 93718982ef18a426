using System.Buffers.Binary;
using System.Text;

namespace HandlerRuntime.Fabrics.Tcmu;

// Wire format of generic netlink (linux/netlink.h, linux/genetlink.h): nlmsghdr, genlmsghdr,
// then attributes (nlattr), everything host-endian and padded to 4 bytes.

/// <summary>struct nlmsghdr (16 bytes).</summary>
internal static class NetlinkHeader
{
    public const int Length = 0;   // u32: whole message, header included
    public const int Type = 4;     // u16: family id, or NLMSG_ERROR/NLMSG_DONE
    public const int Flags = 6;    // u16
    public const int Sequence = 8; // u32
    public const int PortId = 12;  // u32
    public const int Size = 16;

    public const ushort TypeError = 2;
    public const ushort TypeDone = 3;

    public const ushort FlagRequest = 0x1;
    public const ushort FlagAck = 0x4;

    /// <summary>struct nlmsgerr after the header: s32 error, then the offending header.</summary>
    public const int ErrorCode = Size;
}

/// <summary>struct genlmsghdr (4 bytes) after the netlink header.</summary>
internal static class GenericHeader
{
    public const int Command = NetlinkHeader.Size;       // u8
    public const int Version = NetlinkHeader.Size + 1;   // u8
    public const int Attributes = NetlinkHeader.Size + 4;

    /// <summary>The generic netlink controller (GENL_ID_CTRL) that resolves family names.</summary>
    public const ushort ControllerId = 0x10;
    public const byte CtrlCmdGetFamily = 3;
    public const ushort CtrlAttrFamilyId = 1;
    public const ushort CtrlAttrFamilyName = 2;
    public const ushort CtrlAttrMcastGroups = 7;
    public const ushort CtrlAttrMcastGroupName = 1;
    public const ushort CtrlAttrMcastGroupId = 2;
}

/// <summary>struct nlattr: u16 length (header included), u16 type, payload padded to 4.</summary>
internal static class NetlinkAttribute
{
    public const int HeaderSize = 4;
    public const ushort TypeMask = 0x3FFF; // without NLA_F_NESTED and NLA_F_NET_BYTEORDER

    public static int Align(int n) => (n + 3) & ~3;
}

/// <summary>Builds one generic netlink message in a caller's buffer.</summary>
internal ref struct NetlinkMessageWriter
{
    private readonly Span<byte> buffer;
    private int used;

    public NetlinkMessageWriter(Span<byte> buffer, ushort type, ushort flags, uint sequence, byte command, byte version)
    {
        this.buffer = buffer;
        buffer[..GenericHeader.Attributes].Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[NetlinkHeader.Type..], type);
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[NetlinkHeader.Flags..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[NetlinkHeader.Sequence..], sequence);
        buffer[GenericHeader.Command] = command;
        buffer[GenericHeader.Version] = version;
        used = GenericHeader.Attributes;
    }

    private Span<byte> Attribute(ushort type, int payload)
    {
        var total = NetlinkAttribute.HeaderSize + payload;
        var a = buffer.Slice(used, NetlinkAttribute.Align(total));
        a.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(a, (ushort)total);
        BinaryPrimitives.WriteUInt16LittleEndian(a[2..], type);
        used += a.Length;
        return a.Slice(NetlinkAttribute.HeaderSize, payload);
    }

    public void U8(ushort type, byte value) => Attribute(type, 1)[0] = value;

    public void U32(ushort type, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(Attribute(type, 4), value);

    public void S32(ushort type, int value) => BinaryPrimitives.WriteInt32LittleEndian(Attribute(type, 4), value);

    public void String(ushort type, string value)
    {
        var a = Attribute(type, Encoding.UTF8.GetByteCount(value) + 1); // NUL-terminated
        Encoding.UTF8.GetBytes(value, a);
    }

    /// <summary>Sets the length and returns the message.</summary>
    public ReadOnlySpan<byte> Finish()
    {
        BinaryPrimitives.WriteUInt32LittleEndian(buffer, (uint)used);
        return buffer[..used];
    }
}

/// <summary>One netlink message of a received datagram.</summary>
internal readonly ref struct NetlinkMessage(ReadOnlySpan<byte> bytes)
{
    public ReadOnlySpan<byte> Bytes { get; } = bytes;

    public ushort Type => BinaryPrimitives.ReadUInt16LittleEndian(Bytes[NetlinkHeader.Type..]);

    public uint Sequence => BinaryPrimitives.ReadUInt32LittleEndian(Bytes[NetlinkHeader.Sequence..]);

    /// <summary>For NLMSG_ERROR: 0 (an acknowledgement) or a negative errno.</summary>
    public int Error => Bytes.Length >= NetlinkHeader.ErrorCode + 4 ? BinaryPrimitives.ReadInt32LittleEndian(Bytes[NetlinkHeader.ErrorCode..]) : -Libc.EINVAL;

    public byte Command => Bytes.Length > GenericHeader.Command ? Bytes[GenericHeader.Command] : (byte)0;

    public byte Version => Bytes.Length > GenericHeader.Version ? Bytes[GenericHeader.Version] : (byte)0;

    public NetlinkAttributes Attributes => new(Bytes.Length > GenericHeader.Attributes ? Bytes[GenericHeader.Attributes..] : default);

    /// <summary>Splits a datagram into its messages (each nlmsg_len long, aligned to 4); stops at a malformed length.</summary>
    public static Enumerator Split(ReadOnlySpan<byte> datagram) => new(datagram);

    public ref struct Enumerator(ReadOnlySpan<byte> rest)
    {
        private ReadOnlySpan<byte> rest = rest;

        public NetlinkMessage Current { get; private set; }

        public readonly Enumerator GetEnumerator() => this;

        public bool MoveNext()
        {
            if (rest.Length < NetlinkHeader.Size)
                return false;
            var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(rest);
            if (length < NetlinkHeader.Size || length > rest.Length)
                return false;
            Current = new NetlinkMessage(rest[..length]);
            rest = rest[Math.Min(rest.Length, NetlinkAttribute.Align(length))..];
            return true;
        }
    }
}

/// <summary>One attribute: its type (flags masked off) and payload.</summary>
internal readonly ref struct NetlinkAttributeValue(ushort type, ReadOnlySpan<byte> payload)
{
    public ushort Type { get; } = type;

    public ReadOnlySpan<byte> Payload { get; } = payload;

    public void Deconstruct(out ushort t, out ReadOnlySpan<byte> p)
    {
        t = Type;
        p = Payload;
    }
}

/// <summary>The attributes of a message (or of a nested attribute), by type.</summary>
internal readonly ref struct NetlinkAttributes(ReadOnlySpan<byte> bytes)
{
    private readonly ReadOnlySpan<byte> bytes = bytes;

    /// <summary>The payload of the first attribute of <paramref name="type"/>; false when there is none.</summary>
    public bool TryGet(ushort type, out ReadOnlySpan<byte> payload)
    {
        foreach (var (t, p) in this)
            if (t == type)
            {
                payload = p;
                return true;
            }
        payload = default;
        return false;
    }

    public uint? U32(ushort type) => TryGet(type, out var p) && p.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(p) : null;

    public ushort? U16(ushort type) => TryGet(type, out var p) && p.Length >= 2 ? BinaryPrimitives.ReadUInt16LittleEndian(p) : null;

    public ulong? U64(ushort type) => TryGet(type, out var p) && p.Length >= 8 ? BinaryPrimitives.ReadUInt64LittleEndian(p) : null;

    public byte? U8(ushort type) => TryGet(type, out var p) && p.Length >= 1 ? p[0] : null;

    /// <summary>A NUL-terminated string attribute, without the NUL.</summary>
    public string? String(ushort type)
    {
        if (!TryGet(type, out var p))
            return null;
        var end = p.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end >= 0 ? p[..end] : p);
    }

    public Enumerator GetEnumerator() => new(bytes);

    public ref struct Enumerator(ReadOnlySpan<byte> rest)
    {
        private ReadOnlySpan<byte> rest = rest;

        public NetlinkAttributeValue Current { get; private set; }

        public bool MoveNext()
        {
            if (rest.Length < NetlinkAttribute.HeaderSize)
                return false;
            var length = BinaryPrimitives.ReadUInt16LittleEndian(rest);
            if (length < NetlinkAttribute.HeaderSize || length > rest.Length)
                return false;
            var type = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(rest[2..]) & NetlinkAttribute.TypeMask);
            Current = new NetlinkAttributeValue(type, rest[NetlinkAttribute.HeaderSize..length]);
            rest = rest[Math.Min(rest.Length, NetlinkAttribute.Align(length))..];
            return true;
        }
    }
}

/// <summary>
/// A non-blocking AF_NETLINK / NETLINK_GENERIC socket: resolves a family and its multicast
/// groups through the controller, joins groups, sends requests and receives datagrams.
/// </summary>
internal sealed unsafe class GenericNetlinkSocket : IDisposable
{
    public const int ReceiveBufferSize = 64 << 10;

    private int sequence;

    private GenericNetlinkSocket(int fd) => Fd = fd;

    public int Fd { get; private set; }

    public static GenericNetlinkSocket Open()
    {
        var fd = Libc.Socket(Libc.AfNetlink, Libc.SockRaw | Libc.SockNonBlock | Libc.SockCloExec, Libc.NetlinkGeneric);
        if (fd < 0)
            throw new IOException($"a generic netlink socket cannot be opened: {Libc.Describe(Libc.Errno)}");
        var address = new Libc.SockAddrNetlink { Family = Libc.AfNetlink };
        if (Libc.Bind(fd, &address, (uint)sizeof(Libc.SockAddrNetlink)) != 0)
        {
            var e = Libc.Errno;
            Libc.Close(fd);
            throw new IOException($"the generic netlink socket cannot be bound: {Libc.Describe(e)}");
        }
        var size = 1 << 20; // events come in bursts when many devices are created at once
        Libc.SetSockOpt(fd, Libc.SolSocket, Libc.SoRcvBuf, &size, sizeof(int));
        return new GenericNetlinkSocket(fd);
    }

    public uint NextSequence() => (uint)Interlocked.Increment(ref sequence);

    /// <summary>Sends one message; returns 0 or an errno.</summary>
    public int Send(ReadOnlySpan<byte> message)
    {
        fixed (byte* p = message)
        {
            while (true)
            {
                var n = Libc.Send(Fd, p, (nuint)message.Length, 0);
                if (n >= 0)
                    return 0;
                var e = Libc.Errno;
                if (e != Libc.EINTR)
                    return e;
            }
        }
    }

    /// <summary>Receives one datagram; 0 when nothing is waiting.</summary>
    public int Receive(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                var n = Libc.Recv(Fd, p, (nuint)buffer.Length, 0);
                if (n >= 0)
                    return (int)n;
                var e = Libc.Errno;
                if (e == Libc.EAGAIN)
                    return 0;
                if (e != Libc.EINTR)
                    throw new IOException($"netlink receive failed: {Libc.Describe(e)}");
            }
        }
    }

    /// <summary>Waits up to <paramref name="milliseconds"/> for a datagram (used only while resolving, before the event loop runs).</summary>
    public int ReceiveWithin(Span<byte> buffer, int milliseconds)
    {
        var deadline = Environment.TickCount64 + milliseconds;
        while (true)
        {
            var n = Receive(buffer);
            if (n > 0)
                return n;
            var left = (int)(deadline - Environment.TickCount64);
            if (left <= 0)
                return 0;
            var pfd = new Libc.PollFd { Fd = Fd, Events = Libc.PollIn };
            Libc.Poll(&pfd, 1, left);
        }
    }

    /// <summary>The family id and multicast groups of <paramref name="name"/>, or null when no such family is registered.</summary>
    public (ushort Id, Dictionary<string, uint> Groups)? ResolveFamily(string name)
    {
        Span<byte> request = stackalloc byte[64];
        var seq = NextSequence();
        var w = new NetlinkMessageWriter(request, GenericHeader.ControllerId, NetlinkHeader.FlagRequest, seq, GenericHeader.CtrlCmdGetFamily, 1);
        w.String(GenericHeader.CtrlAttrFamilyName, name);
        if (Send(w.Finish()) is var e and not 0)
            throw new IOException($"netlink: asking for family {name} failed: {Libc.Describe(e)}");
        var buffer = new byte[ReceiveBufferSize];
        while (true)
        {
            var n = ReceiveWithin(buffer, 2000);
            if (n == 0)
                throw new IOException($"netlink: no answer about family {name} within 2 s");
            foreach (var m in NetlinkMessage.Split(buffer.AsSpan(0, n)))
            {
                if (m.Sequence != seq)
                    continue;
                if (m.Type == NetlinkHeader.TypeError)
                {
                    if (m.Error == -Libc.ENOENT)
                        return null;
                    throw new IOException($"netlink: family {name}: {Libc.Describe(-m.Error)}");
                }
                if (m.Type != GenericHeader.ControllerId)
                    continue;
                var attrs = m.Attributes;
                var id = attrs.U16(GenericHeader.CtrlAttrFamilyId) ?? throw new IOException($"netlink: the answer about {name} has no family id");
                var groups = new Dictionary<string, uint>(StringComparer.Ordinal);
                if (attrs.TryGet(GenericHeader.CtrlAttrMcastGroups, out var nested))
                    foreach (var (_, group) in new NetlinkAttributes(nested))
                    {
                        var g = new NetlinkAttributes(group);
                        if (g.String(GenericHeader.CtrlAttrMcastGroupName) is { } gname && g.U32(GenericHeader.CtrlAttrMcastGroupId) is { } gid)
                            groups[gname] = gid;
                    }
                return (id, groups);
            }
        }
    }

    public void JoinGroup(uint group)
    {
        if (Libc.SetSockOpt(Fd, Libc.SolNetlink, Libc.NetlinkAddMembership, &group, sizeof(uint)) != 0)
            throw new IOException($"netlink: joining multicast group {group} failed: {Libc.Describe(Libc.Errno)}");
    }

    public void Dispose()
    {
        if (Fd >= 0)
            Libc.Close(Fd);
        Fd = -1;
    }
}
