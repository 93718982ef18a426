using System.Buffers.Binary;
using System.Runtime.InteropServices;
using HandlerRuntime.Fabrics.Tcmu;

namespace HandlerRuntime.Tests.Fabrics;

/// <summary>
/// A byte array laid out like a TCMU mapping (mailbox, command ring, data area), with the
/// kernel's producer side written after target_core_user's queue_cmd_ring: CMD entries of
/// max(48 + 16 iovecs, 112) bytes plus the CDB rounded up to 8, a PAD to the end of the ring
/// when an entry does not fit before it, TMR entries, and cmd_head advanced after the entry.
/// </summary>
internal sealed unsafe class TcmuRingImage : IDisposable
{
    public const int RingOffset = 128;
    private readonly byte[] bytes;
    private readonly GCHandle pin;
    private ushort nextId = 1;

    public TcmuRingImage(uint ringSize, int dataSize, ushort capabilities = 0xF, ushort version = 2)
    {
        RingSize = ringSize;
        bytes = new byte[RingOffset + ringSize + dataSize];
        pin = GCHandle.Alloc(bytes, GCHandleType.Pinned);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(0), version);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2), capabilities);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), RingOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), ringSize);
    }

    public uint RingSize { get; }

    public long DataOffset => RingOffset + RingSize;

    public byte* Base => (byte*)pin.AddrOfPinnedObject();

    public Span<byte> Bytes => bytes;

    public CommandRing Ring() => new(Base, bytes.Length);

    /// <summary>Points <paramref name="window"/> at bytes of the image, as the fabric does at a command's data run.</summary>
    public Memory<byte> Window(MappedWindow window, long offset, int length) => window.Set(Base + offset, length);

    public uint Head
    {
        get => BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(12));
        private set => BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), value);
    }

    public uint Tail => BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(64));

    private Span<byte> At(uint position, int length) => bytes.AsSpan(RingOffset + (int)position, length);

    private void MakeRoom(uint length)
    {
        var toEnd = RingSize - Head;
        if (toEnd < length)
        {
            var pad = At(Head, 8);
            pad.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(pad, toEnd | EntryHeader.OpPad);
            Head = 0;
        }
    }

    /// <summary>Queues a command; returns its cmd_id and the ring position of its entry.</summary>
    public (ushort Id, uint Position) AddCommand(byte[] cdb, params (long Offset, int Length)[] iovecs) => AddCommand(cdb, 0, iovecs);

    public (ushort Id, uint Position) AddCommand(byte[] cdb, int bidiCount, params (long Offset, int Length)[] iovecs)
    {
        var fixedPart = Math.Max(CommandEntry.Iovecs + CommandEntry.IovecSize * iovecs.Length, CommandEntry.MinimumSize);
        var length = (uint)(fixedPart + ((cdb.Length + 7) & ~7));
        MakeRoom(length);
        var position = Head;
        var e = At(position, (int)length);
        e.Clear();
        var id = nextId++;
        BinaryPrimitives.WriteUInt32LittleEndian(e, length | EntryHeader.OpCmd);
        BinaryPrimitives.WriteUInt16LittleEndian(e[EntryHeader.CmdId..], id);
        BinaryPrimitives.WriteUInt32LittleEndian(e[CommandEntry.IovCount..], (uint)(iovecs.Length - bidiCount));
        BinaryPrimitives.WriteUInt32LittleEndian(e[CommandEntry.IovBidiCount..], (uint)bidiCount);
        for (var i = 0; i < iovecs.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(e[(CommandEntry.Iovecs + i * 16)..], (ulong)iovecs[i].Offset);
            BinaryPrimitives.WriteUInt64LittleEndian(e[(CommandEntry.Iovecs + i * 16 + 8)..], (ulong)iovecs[i].Length);
        }
        BinaryPrimitives.WriteUInt64LittleEndian(e[CommandEntry.CdbOffset..], (ulong)(RingOffset + position + fixedPart));
        cdb.CopyTo(e[fixedPart..]);
        Head = (position + length) % RingSize;
        return (id, position);
    }

    public uint AddTmr(byte type, params ushort[] ids)
    {
        var length = (uint)((TmrEntry.CmdIds + 2 * ids.Length + 7) & ~7);
        MakeRoom(length);
        var position = Head;
        var e = At(position, (int)length);
        e.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(e, length | EntryHeader.OpTmr);
        e[TmrEntry.TmrType] = type;
        BinaryPrimitives.WriteUInt32LittleEndian(e[TmrEntry.CmdCount..], (uint)ids.Length);
        for (var i = 0; i < ids.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(e[(TmrEntry.CmdIds + 2 * i)..], ids[i]);
        Head = (position + length) % RingSize;
        return position;
    }

    /// <summary>An entry with an opcode target_core_user does not define.</summary>
    public uint AddUnknown(byte op)
    {
        MakeRoom(16);
        var position = Head;
        var e = At(position, 16);
        e.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(e, 16u | op);
        Head = (position + 16) % RingSize;
        return position;
    }

    /// <summary>What the kernel's completion pass reads from the entry at <paramref name="position"/>.</summary>
    public (ushort Id, byte UserFlags, byte Status, uint ReadLength, byte[] Sense) Response(uint position)
    {
        var e = At(position, CommandEntry.MinimumSize);
        return (BinaryPrimitives.ReadUInt16LittleEndian(e[EntryHeader.CmdId..]), e[EntryHeader.UserFlags], e[CommandEntry.ScsiStatus],
            BinaryPrimitives.ReadUInt32LittleEndian(e[CommandEntry.ReadLen..]), e.Slice(CommandEntry.SenseBuffer, CommandEntry.SenseBufferSize).ToArray());
    }

    public byte UserFlagsAt(uint position) => At(position, 8)[EntryHeader.UserFlags];

    public void Corrupt(uint position, int field, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(At(position, field + 4)[field..], value);

    public void Dispose() => pin.Free();
}
