using System.Net;
using HandlerRuntime.Config;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Fabrics.Nbd;

/// <summary>
/// An exported LUN as one connection negotiated it: the LU it is bound to (a LUN deleted or
/// recreated under the same name is another LU, and the connection's requests then fail
/// rather than reach it), what the client may do, and the shape the client was told.
/// </summary>
internal sealed record NbdExport(string Name, ScsiTarget Target, int Number, ScsiLun Lun, NbdExportRule Rule)
{
    /// <summary>Whether the LU is still mapped where it was when the connection chose it.</summary>
    public bool IsCurrent => ReferenceEquals(Target.Lookup((ulong)Number), Lun);

    public bool ReadOnly => Rule.ReadOnly || Lun.WriteProtected;

    public int BlockSize => Lun.BlockSize;

    public long SizeBytes => Lun.BlockCount * Lun.BlockSize;

    public string Description => Rule.Description ?? $"{LunIdentity.VendorId} {Lun.Identity.ProductId}, {Sizes.Format(SizeBytes)}, LUN {Number} of {Target.Name}";

    /// <summary>Unmapped ranges read back as zeroes (LBPRZ): a deallocated extent is then a hole that reads as zeroes.</summary>
    public bool UnmapReadsZeroes => (Lun.Capabilities & DeviceCapabilities.UnmapReadsZeroes) != 0;

    public bool CanUnmap => (Lun.Capabilities & DeviceCapabilities.Unmap) != 0;

    /// <summary>
    /// Zeroing is faster than writing zeroes when the device zeroes natively, or when it may
    /// deallocate the range and deallocated blocks read as zeroes (only without NO_HOLE).
    /// </summary>
    public bool FastZero(bool noHole) => (Lun.Capabilities & DeviceCapabilities.WriteZeroes) != 0 || (!noHole && CanUnmap && UnmapReadsZeroes);

    /// <summary>
    /// The transmission flags, from what the LU really does (nbdkit's can_* checks at open):
    /// writes, FUA and flush only where the device has a cache to flush, trim where it can
    /// deallocate, multi-conn where the device runs requests in parallel, DF only with
    /// structured replies.
    /// </summary>
    public NbdTransmissionFlags Flags(bool structuredReplies)
    {
        var caps = Lun.Capabilities;
        var f = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendCache;
        if (ReadOnly)
            f |= NbdTransmissionFlags.ReadOnly;
        else
        {
            // Without a volatile cache every write is durable at once: there is nothing to flush.
            if ((caps & DeviceCapabilities.Flush) != 0)
                f |= NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.SendFua;
            if (CanUnmap)
                f |= NbdTransmissionFlags.SendTrim;
            // WRITE SAME emulates zeroing where the device cannot; FAST_ZERO is then refused quickly.
            f |= NbdTransmissionFlags.SendWriteZeroes | NbdTransmissionFlags.SendFastZero;
        }
        if ((caps & DeviceCapabilities.Rotational) != 0)
            f |= NbdTransmissionFlags.Rotational;
        // A flush reaches the one device every connection shares, so caches are consistent
        // across connections; more connections only help a device that takes requests in parallel.
        if (Lun.Device.ThreadModel == ThreadModel.Parallel)
            f |= NbdTransmissionFlags.CanMultiConn;
        if (structuredReplies)
            f |= NbdTransmissionFlags.SendDf;
        return f;
    }

    /// <summary>NBD_INFO_BLOCK_SIZE: the logical block, the physical block (at least 4 KiB), and the largest payload.</summary>
    public (uint Minimum, uint Preferred, uint Maximum) BlockSizes(int maxRequestBytes)
    {
        var bs = Lun.BlockSize;
        var max = (int)Math.Min((long)Lun.MaxTransferBlocks * bs, maxRequestBytes) / bs * bs;
        var physical = bs << Lun.Geometry.PhysicalBlockExponent;
        var preferred = Math.Min(Math.Max(physical, 4096), max);
        return ((uint)bs, (uint)preferred, (uint)max);
    }
}

/// <summary>Which LUNs are exported under which names, and to whom (from <see cref="NbdOptions"/>).</summary>
internal static class NbdExports
{
    /// <summary>Every export <paramref name="client"/> may see, in order (config order, or LUN names sorted).</summary>
    public static List<NbdExport> List(TargetRegistry targets, NbdOptions options, IPAddress client)
    {
        var served = Served(targets);
        var list = new List<NbdExport>();
        if (options.Exports is null)
        {
            foreach (var (name, (target, number, lun)) in served.OrderBy(p => p.Key, StringComparer.Ordinal))
                list.Add(new NbdExport(name, target, number, lun, new NbdExportRule(name)));
        }
        else
        {
            foreach (var rule in options.Exports)
                if (served.TryGetValue(rule.Lun, out var at))
                    list.Add(new NbdExport(rule.Lun, at.Target, at.Number, at.Lun, rule));
        }
        list.RemoveAll(e => !e.Rule.Allow.Allows(client));
        return list;
    }

    /// <summary>The export a client names ("" is the default export), or why there is none for it.</summary>
    public static (NbdExport? Export, NbdReply Error, string Why) Find(TargetRegistry targets, NbdOptions options, IPAddress client, string name)
    {
        var wanted = name.Length == 0 ? options.DefaultExport : name;
        var served = Served(targets);
        if (wanted is null)
        {
            // No default configured: the first export, as LIST orders them.
            var first = List(targets, options, client).FirstOrDefault();
            return first is null ? (null, NbdReply.ErrUnknown, "this server exports nothing to you") : (first, 0, "");
        }
        NbdExportRule? rule = options.Exports is null ? new NbdExportRule(wanted) : options.Exports.FirstOrDefault(r => r.Lun == wanted);
        if (rule is null || !served.TryGetValue(wanted, out var at))
            return (null, NbdReply.ErrUnknown, $"no export named '{wanted}'");
        if (!rule.Allow.Allows(client))
            return (null, NbdReply.ErrPolicy, $"export '{wanted}' is not exported to {client}");
        return (new NbdExport(wanted, at.Target, at.Number, at.Lun, rule), 0, "");
    }

    private static Dictionary<string, (ScsiTarget Target, int Number, ScsiLun Lun)> Served(TargetRegistry targets)
    {
        var served = new Dictionary<string, (ScsiTarget, int, ScsiLun)>(StringComparer.Ordinal);
        foreach (var t in targets.All)
            foreach (var (number, lun) in t.Luns)
                served.TryAdd(lun.Name, (t, number, lun));
        return served;
    }
}
