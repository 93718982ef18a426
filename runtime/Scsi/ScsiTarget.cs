using HandlerRuntime.Scsi.Commands;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi;

/// <summary>
/// A SCSI target device: a name, its LUN map and who may use it. Fabrics hand every
/// command to <see cref="ExecuteAsync"/>; the target answers for LUN numbers with no LU
/// behind them (REPORT LUNS, INQUIRY with qualifier 011b, LOGICAL UNIT NOT SUPPORTED)
/// and passes the rest to the LU. The map is copy-on-write, so lookups take no lock.
/// </summary>
public sealed class ScsiTarget(string name)
{
    /// <summary>Highest LUN number this runtime maps (flat addressing covers 0-16383).</summary>
    public const int MaxLunNumber = 16383;

    private readonly object mapLock = new();
    private volatile ScsiLun?[] luns = [];

    public string Name { get; } = name;

    /// <summary>Access settings from configuration; replaced as a whole on reload.</summary>
    public TargetAccess Access { get; set; } = TargetAccess.Open;

    public ScsiLun? Lookup(ulong lun)
    {
        var map = luns;
        return lun < (ulong)map.Length ? map[lun] : null;
    }

    /// <summary>The mapped LUN numbers and their LUs, in order.</summary>
    public IReadOnlyList<(int Number, ScsiLun Lun)> Luns
    {
        get
        {
            var map = luns;
            var list = new List<(int, ScsiLun)>();
            for (var i = 0; i < map.Length; i++)
                if (map[i] is { } l)
                    list.Add((i, l));
            return list;
        }
    }

    public int LowestFreeNumber()
    {
        var map = luns;
        for (var i = 0; i < map.Length; i++)
            if (map[i] is null)
                return i;
        return map.Length;
    }

    /// <summary>Maps <paramref name="lun"/> at <paramref name="number"/>; false when the number is taken.</summary>
    public bool TryMap(int number, ScsiLun lun)
    {
        if (number is < 0 or > MaxLunNumber)
            return false;
        lock (mapLock)
        {
            var map = luns;
            if (number < map.Length && map[number] is not null)
                return false;
            var copy = new ScsiLun?[Math.Max(map.Length, number + 1)];
            map.CopyTo(copy, 0);
            copy[number] = lun;
            luns = copy;
            AnnounceLunChange(copy);
            return true;
        }
    }

    public void Unmap(int number)
    {
        lock (mapLock)
        {
            var map = luns;
            if (number >= map.Length || map[number] is null)
                return;
            var copy = (ScsiLun?[])map.Clone();
            copy[number] = null;
            var length = copy.Length;
            while (length > 0 && copy[length - 1] is null)
                length--;
            luns = copy[..length];
            AnnounceLunChange(luns);
        }
    }

    // SPC-4: the inventory changed; every LU of this target tells every nexus.
    private static void AnnounceLunChange(ScsiLun?[] map)
    {
        foreach (var l in map)
            l?.UnitAttentions.EstablishForAll(Sense.ReportedLunsDataChanged);
    }

    /// <summary>Tells every LU of this target that <paramref name="nexus"/> is gone (its SPC-2 reservations are released).</summary>
    public void NexusLost(ItNexus nexus)
    {
        foreach (var lun in luns)
            lun?.NexusLost(nexus);
    }

    public ValueTask ExecuteAsync(ScsiTask task)
    {
        var cdb = task.CdbSpan;
        if (!cdb.IsEmpty && cdb[0] == 0xA0)
            return ReportLuns(task);
        var lun = Lookup(task.Lun);
        if (lun is not null)
            return lun.ExecuteAsync(task);
        return NoSuchLun(task);
    }

    private ValueTask NoSuchLun(ScsiTask task)
    {
        task.ClearResponse();
        var cdb = task.CdbSpan;
        var op = cdb.IsEmpty ? -1 : cdb[0];
        if (op == 0x12 && CommandTable.Find(cdb) is { } inquiry && CommandDispatcher.Validate(inquiry, cdb) is null && (cdb[1] & 1) == 0 && cdb[2] == 0)
            return DataIn.End(task, InquiryCommand.NoLogicalUnit(DataIn.Begin(task, 36)), Cdb.U16(cdb, 3));
        if (op == 0x03 && cdb.Length >= 6)
        {
            var d = DataIn.Begin(task, ScsiTask.MaxSenseLength);
            return DataIn.End(task, SenseFormatter.Write(Sense.LunNotSupported, (cdb[1] & 1) != 0, d), cdb[4]);
        }
        task.SetSense(Sense.LunNotSupported, descriptorFormat: false);
        return default;
    }

    private ValueTask ReportLuns(ScsiTask task)
    {
        task.ClearResponse();
        var cdb = task.CdbSpan;
        var invalid = CommandDispatcher.Validate(CommandTable.Find(cdb)!, cdb);
        var alloc = invalid is null ? Cdb.U32(cdb, 6) : 0;
        if (invalid is null && alloc < 16)
            invalid = Sense.InvalidFieldInCdb.WithFieldPointer(6);
        if (invalid is null && cdb[2] is not (0x00 or 0x01 or 0x02 or 0x10 or 0x11 or 0x12))
            invalid = Sense.InvalidFieldInCdb.WithFieldPointer(2);
        if (invalid is { } sense)
        {
            task.SetSense(sense, descriptorFormat: Lookup(task.Lun)?.Mode.DescriptorSense ?? false);
            return default;
        }
        // 0x01, 0x10-0x12: well-known and administrative LUs; this target has none.
        var list = cdb[2] is 0x00 or 0x02 ? Luns : [];
        var d = DataIn.Begin(task, 8 + 8 * list.Count);
        Cdb.Put32(d, 0, (uint)(8 * list.Count));
        for (var i = 0; i < list.Count; i++)
            EncodeLun(list[i].Number, d.Slice(8 + 8 * i, 8));
        return DataIn.End(task, 8 + 8 * list.Count, alloc);
    }

    /// <summary>Writes a SAM LUN field: peripheral addressing below 256, flat space above.</summary>
    public static void EncodeLun(int number, Span<byte> lun8)
    {
        lun8[..8].Clear();
        if (number < 256)
        {
            lun8[1] = (byte)number;
        }
        else
        {
            lun8[0] = (byte)(0x40 | (number >> 8));
            lun8[1] = (byte)number;
        }
    }

    /// <summary>Reads a SAM LUN field; returns <see cref="ulong.MaxValue"/> for an addressing method not used here.</summary>
    public static ulong DecodeLun(ReadOnlySpan<byte> lun8) => (lun8[0] >> 6) switch
    {
        0 when (lun8[0] & 0x3F) == 0 => lun8[1],
        1 => (ulong)((lun8[0] & 0x3F) << 8 | lun8[1]),
        _ => ulong.MaxValue,
    };
}

/// <summary>Who may log in to a target, and how (fabric-neutral parts plus CHAP for iSCSI).</summary>
/// <param name="AllowedInitiators">Initiator names allowed; empty means any.</param>
/// <param name="Chap">CHAP credentials, or null when no authentication is required.</param>
public sealed record TargetAccess(IReadOnlyList<string> AllowedInitiators, ChapCredentials? Chap)
{
    public static TargetAccess Open { get; } = new([], null);

    public bool Allows(string initiatorName)
        => AllowedInitiators.Count == 0 || AllowedInitiators.Contains(initiatorName, StringComparer.OrdinalIgnoreCase);
}

/// <summary>CHAP secrets: the initiator proves <see cref="User"/>/<see cref="Secret"/>; with mutual CHAP the target proves <see cref="MutualUser"/>/<see cref="MutualSecret"/>.</summary>
public sealed record ChapCredentials(string User, string Secret, string? MutualUser, string? MutualSecret);
