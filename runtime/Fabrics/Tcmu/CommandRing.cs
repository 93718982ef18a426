using System.Buffers.Binary;

namespace HandlerRuntime.Fabrics.Tcmu;

/// <summary>One entry of the command ring as found at the private read index.</summary>
/// <param name="Position">Offset of the entry from the start of the ring.</param>
/// <param name="Length">Whole entry length in bytes (a multiple of 8).</param>
/// <param name="Op">TCMU_OP_PAD, _CMD, _TMR or an opcode this runtime does not know.</param>
/// <param name="CmdId">The kernel's command id (CMD entries only).</param>
internal readonly record struct RingEntry(uint Position, uint Length, byte Op, ushort CmdId);

/// <summary>An iovec of a command: a run of the data area, as offset from the start of the mapping.</summary>
internal readonly record struct DataRun(long Offset, int Length);

/// <summary>The ring is not what the kernel writes (a bad length or offset); the device cannot be served safely.</summary>
internal sealed class RingCorruptException(string message) : Exception(message);

/// <summary>
/// The TCMU command ring over a mapping (the mailbox, the ring, the data area), as
/// target_core_user lays it out. The kernel produces entries at <c>cmd_head</c>; this side keeps
/// a private read index that runs ahead of <c>cmd_tail</c>, and completes commands <b>at</b>
/// <c>cmd_tail</c> in ring order (out-of-order completion: a command finishing early takes over
/// the oldest consumed CMD entry, whose own command may still be running). That is safe because
/// every consumed entry's request was copied out before dispatch, and <c>cmd_tail</c> never
/// passes the read index: there are as many consumed CMD entries behind it as commands running.
/// Reads of the entries are single-threaded (the event loop); completions are serialized by the
/// caller. Addresses are validated against the mapping so a bad entry cannot make this process
/// touch memory outside it.
/// </summary>
internal sealed unsafe class CommandRing
{
    private readonly byte* map;
    private readonly long mapSize;
    private uint next;

    /// <summary>Reads and checks the mailbox of a mapping of <paramref name="mapSize"/> bytes at <paramref name="map"/>.</summary>
    public CommandRing(byte* map, long mapSize)
    {
        this.map = map;
        this.mapSize = mapSize;
        if (mapSize < Mailbox.Size)
            throw new RingCorruptException($"the mapping is {mapSize} bytes, smaller than the {Mailbox.Size}-byte mailbox");
        var version = BinaryPrimitives.ReadUInt16LittleEndian(Span(Mailbox.Version, 2));
        if (version != Mailbox.SupportedVersion)
            throw new RingCorruptException($"mailbox version {version}; this runtime speaks version {Mailbox.SupportedVersion} (Linux 4.x and later)");
        Capabilities = BinaryPrimitives.ReadUInt16LittleEndian(Span(Mailbox.Flags, 2));
        RingOffset = BinaryPrimitives.ReadUInt32LittleEndian(Span(Mailbox.CmdrOff, 4));
        RingSize = BinaryPrimitives.ReadUInt32LittleEndian(Span(Mailbox.CmdrSize, 4));
        if (RingOffset < Mailbox.Size || RingSize < CommandEntry.MinimumSize || RingOffset + (long)RingSize > mapSize)
            throw new RingCorruptException($"the ring at {RingOffset} of {RingSize} bytes does not fit the {mapSize}-byte mapping");
        DataOffset = RingOffset + (long)RingSize;
        next = Tail;
    }

    public ushort Capabilities { get; }

    public uint RingOffset { get; }

    public uint RingSize { get; }

    /// <summary>Where the data area starts, from the start of the mapping.</summary>
    public long DataOffset { get; }

    public bool OutOfOrderCompletion => (Capabilities & Mailbox.CapOutOfOrderCompletion) != 0;

    public bool ReadLenSupported => (Capabilities & Mailbox.CapReadLen) != 0;

    /// <summary>The kernel's producer index (acquire: the entry before it is complete).</summary>
    public uint Head => Volatile.Read(ref *(uint*)(map + Mailbox.CmdHead));

    /// <summary>The completion index.</summary>
    public uint Tail => Volatile.Read(ref *(uint*)(map + Mailbox.CmdTail));

    /// <summary>The private read index: the next entry to consume (read by completing threads too).</summary>
    public uint ReadIndex => Volatile.Read(ref next);

    /// <summary>Starts consuming at <c>cmd_tail</c> (after attach, or after the kernel reset the ring).</summary>
    public void StartAtTail() => Volatile.Write(ref next, Tail);

    /// <summary>The entry at the read index, if the kernel has produced one.</summary>
    public bool TryPeek(out RingEntry entry)
    {
        var position = next;
        if (position == Head)
        {
            entry = default;
            return false;
        }
        entry = EntryAt(position);
        return true;
    }

    /// <summary>Moves the read index past <paramref name="entry"/> (its request must have been copied out).</summary>
    public void Advance(in RingEntry entry) => Volatile.Write(ref next, (entry.Position + entry.Length) % RingSize);

    private RingEntry EntryAt(uint position)
    {
        if (position >= RingSize || position % EntryHeader.AlignSize != 0)
            throw new RingCorruptException($"ring index {position} is outside the {RingSize}-byte ring or unaligned");
        var header = Entry(position);
        var lenOp = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(header, 4));
        var length = lenOp & ~EntryHeader.OpMask;
        var op = (byte)(lenOp & EntryHeader.OpMask);
        // An entry never wraps: the kernel pads to the end of the ring instead.
        if (length < EntryHeader.Size || position + (long)length > RingSize)
            throw new RingCorruptException($"the entry at ring index {position} claims {length} bytes (ring of {RingSize})");
        var id = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(header + EntryHeader.CmdId, 2));
        return new RingEntry(position, length, op, id);
    }

    private byte* Entry(uint position) => map + RingOffset + position;

    private Span<byte> Span(long offset, int length) => new(map + offset, length);

    /// <summary>Flags an entry whose opcode this runtime does not know, as libtcmu does (TCMU_UFLAG_UNKNOWN_OP).</summary>
    public void MarkUnknown(in RingEntry entry) => Entry(entry.Position)[EntryHeader.UserFlags] |= EntryHeader.UserFlagUnknownOp;

    // ---- CMD entries ----

    /// <summary>
    /// The CDB's length as the kernel copied it, from the opcode's group (libtcmu and the kernel's
    /// scsi_command_size): 6, 10, 10, 12, 16, 12, 10, 10 for groups 0-7, and 8 + byte 7 for the
    /// variable-length opcode 7Fh. The ring does not store it.
    /// </summary>
    public static int CdbLength(byte opcode, byte additionalLength) => opcode == 0x7F ? 8 + additionalLength : (opcode >> 5) switch
    {
        0 => 6,
        1 or 2 => 10,
        3 => 12,
        4 => 16,
        5 => 12,
        _ => 10,
    };

    /// <summary>The number of data-out (or data-in) iovecs and of bidirectional data-in iovecs.</summary>
    public (int Count, int BidiCount) IovecCounts(in RingEntry entry)
    {
        var e = Entry(entry.Position);
        var count = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(e + CommandEntry.IovCount, 4));
        var bidi = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(e + CommandEntry.IovBidiCount, 4));
        if (entry.Length < CommandEntry.MinimumSize || count + (long)bidi > (entry.Length - CommandEntry.Iovecs) / CommandEntry.IovecSize)
            throw new RingCorruptException($"the command at ring index {entry.Position} claims {count}+{bidi} iovecs in {entry.Length} bytes");
        return ((int)count, (int)bidi);
    }

    /// <summary>Iovec <paramref name="index"/> of a command, checked to lie inside the data area.</summary>
    public DataRun Iovec(in RingEntry entry, int index)
    {
        var at = Entry(entry.Position) + CommandEntry.Iovecs + index * CommandEntry.IovecSize;
        var offset = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(at, 8));
        var length = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(at + CommandEntry.IovecLength, 8));
        if (offset < (ulong)DataOffset || length > int.MaxValue || offset + length > (ulong)mapSize)
            throw new RingCorruptException($"command {entry.CmdId}: iovec {index} ({offset:x}+{length:x}) lies outside the data area");
        return new DataRun((long)offset, (int)length);
    }

    /// <summary>Copies the CDB of a command into <paramref name="into"/> and returns its length.</summary>
    public int CopyCdb(in RingEntry entry, Span<byte> into)
    {
        var e = Entry(entry.Position);
        var cdbOffset = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(e + CommandEntry.CdbOffset, 8));
        var entryStart = (ulong)RingOffset + entry.Position;
        var entryEnd = entryStart + entry.Length;
        // The kernel puts the CDB inside the entry, after the iovecs.
        if (cdbOffset < entryStart + CommandEntry.Iovecs || cdbOffset >= entryEnd)
            throw new RingCorruptException($"command {entry.CmdId}: its CDB offset {cdbOffset:x} lies outside its entry");
        var cdb = map + cdbOffset;
        var available = (int)(entryEnd - cdbOffset);
        var length = CdbLength(cdb[0], available > 7 ? cdb[7] : (byte)0);
        if (length > available || length > into.Length)
            throw new RingCorruptException($"command {entry.CmdId}: a {length}-byte CDB does not fit its entry");
        new ReadOnlySpan<byte>(cdb, length).CopyTo(into);
        return length;
    }

    /// <summary>Memory of the mapping (a data run of a command in flight).</summary>
    public byte* Pointer(long offset) => map + offset;

    // ---- TMR entries ----

    public byte TmrType(in RingEntry entry) => Entry(entry.Position)[TmrEntry.TmrType];

    /// <summary>The ids of the aborted commands a TMR entry lists.</summary>
    public ReadOnlySpan<ushort> TmrCommandIds(in RingEntry entry)
    {
        var e = Entry(entry.Position);
        var count = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(e + TmrEntry.CmdCount, 4));
        if (entry.Length < TmrEntry.CmdIds || count > (entry.Length - TmrEntry.CmdIds) / 2)
            throw new RingCorruptException($"the TMR at ring index {entry.Position} claims {count} ids in {entry.Length} bytes");
        return new ReadOnlySpan<ushort>(e + TmrEntry.CmdIds, (int)count);
    }

    // ---- completion ----

    /// <summary>
    /// Writes one command's response at <c>cmd_tail</c> (stepping over PAD, TMR and unknown
    /// entries there), then advances <c>cmd_tail</c> with release semantics. Callers serialize
    /// completions and have already written any data-in. False (and nothing written) when no
    /// consumed CMD entry is left behind the read index: a completion for a command that was
    /// never read, a bug.
    /// </summary>
    /// <param name="readLength">Bytes really read for a short data-in, or -1 for none (TCMU_UFLAG_READ_LEN).</param>
    public bool Complete(ushort cmdId, byte status, ReadOnlySpan<byte> sense, int readLength)
    {
        var tail = Tail;
        var consumedUpTo = ReadIndex;
        RingEntry at;
        while (true)
        {
            if (tail == consumedUpTo)
                return false;
            at = EntryAt(tail);
            if (at.Op == EntryHeader.OpCmd)
                break;
            tail = (tail + at.Length) % RingSize;
        }
        var e = Entry(at.Position);
        BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(e + EntryHeader.CmdId, 2), cmdId);
        e[EntryHeader.UserFlags] = readLength >= 0 ? EntryHeader.UserFlagReadLen : (byte)0;
        e[CommandEntry.ScsiStatus] = status;
        if (readLength >= 0)
            BinaryPrimitives.WriteUInt32LittleEndian(new Span<byte>(e + CommandEntry.ReadLen, 4), (uint)readLength);
        if (!sense.IsEmpty)
        {
            var into = new Span<byte>(e + CommandEntry.SenseBuffer, CommandEntry.SenseBufferSize);
            var n = Math.Min(sense.Length, into.Length);
            sense[..n].CopyTo(into);
            into[n..].Clear();
        }
        Volatile.Write(ref *(uint*)(map + Mailbox.CmdTail), (at.Position + at.Length) % RingSize);
        return true;
    }
}
