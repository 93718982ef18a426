using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

/// <summary>
/// MODE SENSE and MODE SELECT (SPC-4 6.11-6.14) over the pages this LU has:
/// 01h read-write error recovery, 08h caching (WCE changeable), 0Ah control (D_SENSE
/// and SWP changeable), 1Ch informational exceptions, 3Fh all. Saved pages are not kept.
/// </summary>
internal static class ModeCommands
{
    private static ReadOnlySpan<byte> Pages => [0x01, 0x08, 0x0A, 0x1C];

    private enum Pc { Current = 0, Changeable = 1, Default = 2, Saved = 3 }

    public static ValueTask ModeSense6(ScsiLun lun, ScsiTask task) => ModeSense(lun, task, ten: false);

    public static ValueTask ModeSense10(ScsiLun lun, ScsiTask task) => ModeSense(lun, task, ten: true);

    public static ValueTask ModeSelect6(ScsiLun lun, ScsiTask task) => ModeSelect(lun, task, ten: false);

    public static ValueTask ModeSelect10(ScsiLun lun, ScsiTask task) => ModeSelect(lun, task, ten: true);

    private static ValueTask ModeSense(ScsiLun lun, ScsiTask task, bool ten)
    {
        var cdb = task.CdbSpan;
        var dbd = (cdb[1] & 0x08) != 0;
        var llbaa = ten && (cdb[1] & 0x10) != 0;
        var pc = (Pc)(cdb[2] >> 6);
        var page = cdb[2] & 0x3F;
        var subpage = cdb[3];
        var alloc = ten ? Cdb.U16(cdb, 7) : cdb[4];
        if (pc == Pc.Saved)
            throw new ScsiException(Sense.SavingParametersNotSupported);

        var d = DataIn.Begin(task, 512);
        var hdr = ten ? 8 : 4;
        var n = hdr;
        if (!dbd)
            n += BlockDescriptor(lun, d[n..], llbaa);
        var bdlen = n - hdr;

        if (page == 0x3F)
        {
            if (subpage is not (0x00 or 0xFF))
                throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(3));
            foreach (var p in Pages)
                n += Page(lun, p, pc, d[n..]);
        }
        else
        {
            if (Pages.IndexOf((byte)page) < 0)
                throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2, 5));
            if (subpage is not (0x00 or 0xFF))
                throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(3));
            n += Page(lun, page, pc, d[n..]);
        }

        var deviceSpecific = (byte)(0x10 | (lun.WriteProtected ? 0x80 : 0)); // DPOFUA, WP
        if (ten)
        {
            Cdb.Put16(d, 0, n - 2);
            d[3] = deviceSpecific;
            d[4] = (byte)(llbaa && bdlen == 16 ? 1 : 0);
            Cdb.Put16(d, 6, bdlen);
        }
        else
        {
            d[0] = (byte)(n - 1);
            d[2] = deviceSpecific;
            d[3] = (byte)bdlen;
        }
        return DataIn.End(task, n, alloc);
    }

    private static int BlockDescriptor(ScsiLun lun, Span<byte> d, bool longLba)
    {
        if (longLba)
        {
            Cdb.Put64(d, 0, (ulong)lun.BlockCount);
            Cdb.Put32(d, 12, (uint)lun.BlockSize);
            return 16;
        }
        Cdb.Put32(d, 0, lun.BlockCount > uint.MaxValue ? uint.MaxValue : (uint)lun.BlockCount);
        Cdb.Put24(d, 5, lun.BlockSize);
        return 8;
    }

    /// <summary>Writes one mode page with the values of <paramref name="pc"/>; returns its length.</summary>
    private static int Page(ScsiLun lun, int code, Pc pc, Span<byte> d)
    {
        var mode = lun.Mode;
        switch (code)
        {
            case 0x01:
                d[..12].Clear();
                d[0] = 0x01; d[1] = 0x0A;
                return 12;
            case 0x08:
                d[..20].Clear();
                d[0] = 0x08; d[1] = 0x12;
                var wce = pc switch
                {
                    Pc.Changeable => true,
                    Pc.Default => mode.DefaultWriteCacheEnabled,
                    _ => mode.WriteCacheEnabled,
                };
                d[2] = (byte)(wce ? 0x04 : 0);
                return 20;
            case 0x0A:
                d[..12].Clear();
                d[0] = 0x0A; d[1] = 0x0A;
                if (pc == Pc.Changeable)
                {
                    d[2] = 0x04; // D_SENSE
                    d[4] = 0x08; // SWP
                }
                else
                {
                    var current = pc == Pc.Current;
                    d[2] = (byte)(current && mode.DescriptorSense ? 0x04 : 0);
                    d[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering of SIMPLE tasks
                    d[4] = (byte)(current && mode.SoftwareWriteProtect ? 0x08 : 0);
                    Cdb.Put16(d, 8, 0xFFFF); // busy timeout: unlimited
                }
                return 12;
            case 0x1C:
                d[..12].Clear();
                d[0] = 0x1C; d[1] = 0x0A;
                return 12;
            default:
                throw new InvalidOperationException($"mode page {code:X2}h");
        }
    }

    private static ValueTask ModeSelect(ScsiLun lun, ScsiTask task, bool ten)
    {
        var cdb = task.CdbSpan;
        var length = ten ? Cdb.U16(cdb, 7) : cdb[4];
        if (length == 0)
            return default;
        if ((cdb[1] & 0x10) == 0)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(1, 4)); // PF=0: vendor format, not ours
        if ((cdb[1] & 0x01) != 0)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(1, 0)); // SP: no saved pages
        task.RequireDataOut(length);

        var p = task.DataOutBuffer!.Span[..length];
        var hdr = ten ? 8 : 4;
        if (p.Length < hdr)
            throw new ScsiException(Sense.ParameterListLengthError);
        var bdlen = ten ? Cdb.U16(p, 6) : p[3];
        if (hdr + bdlen > p.Length)
            throw new ScsiException(Sense.ParameterListLengthError);
        var longLba = ten && (p[4] & 1) != 0;
        var bdSize = longLba ? 16 : 8;
        if (bdlen % bdSize != 0)
            throw new ScsiException(Sense.InvalidFieldInParameterList.WithFieldPointer(ten ? 6 : 3, inCdb: false));
        for (var at = hdr; at < hdr + bdlen; at += bdSize)
        {
            var blockLength = longLba ? Cdb.U32(p, at + 12) : Cdb.U24(p, at + 5);
            if (blockLength != (uint)lun.BlockSize)
                throw new ScsiException(Sense.InvalidFieldInParameterList.WithFieldPointer(at + (longLba ? 12 : 5), inCdb: false));
        }

        // Parse and check every page before applying any, so a bad list changes nothing.
        Span<byte> current = stackalloc byte[32];
        Span<byte> changeable = stackalloc byte[32];
        bool? wce = null, dsense = null, swp = null;
        var off = hdr + bdlen;
        while (off < p.Length)
        {
            if (p.Length - off < 2)
                throw new ScsiException(Sense.ParameterListLengthError);
            var code = p[off] & 0x3F;
            if ((p[off] & 0x40) != 0 || Pages.IndexOf((byte)code) < 0)
                throw new ScsiException(Sense.InvalidFieldInParameterList.WithFieldPointer(off, inCdb: false));
            var pageLength = Page(lun, code, Pc.Current, current);
            Page(lun, code, Pc.Changeable, changeable);
            if (p[off + 1] != pageLength - 2)
                throw new ScsiException(Sense.InvalidFieldInParameterList.WithFieldPointer(off + 1, inCdb: false));
            if (off + pageLength > p.Length)
                throw new ScsiException(Sense.ParameterListLengthError);
            var given = p.Slice(off, pageLength);
            for (var i = 2; i < pageLength; i++)
            {
                var diff = (given[i] ^ current[i]) & ~changeable[i];
                if (diff != 0)
                    throw new ScsiException(Sense.InvalidFieldInParameterList.WithFieldPointer(off + i, Cdb.HighestBit(diff), inCdb: false));
            }
            switch (code)
            {
                case 0x08: wce = (given[2] & 0x04) != 0; break;
                case 0x0A: dsense = (given[2] & 0x04) != 0; swp = (given[4] & 0x08) != 0; break;
            }
            off += pageLength;
        }

        // Turning the cache off must not leave earlier acknowledged writes volatile.
        if (wce == false && lun.Mode.WriteCacheEnabled && lun.Device.Has(DeviceCapabilities.Flush))
            return FlushThenApplyAsync(lun, task, wce, dsense, swp);
        Apply(lun, task.Nexus, wce, dsense, swp);
        return default;
    }

    private static async ValueTask FlushThenApplyAsync(ScsiLun lun, ScsiTask task, bool? wce, bool? dsense, bool? swp)
    {
        await lun.Device.FlushAsync(task.AbortToken);
        Apply(lun, task.Nexus, wce, dsense, swp);
    }

    private static void Apply(ScsiLun lun, ItNexus by, bool? wce, bool? dsense, bool? swp) => lun.Mode.Change(by, lun.UnitAttentions, () =>
    {
        if (wce is { } w) lun.Mode.WriteCacheEnabled = w;
        if (dsense is { } d) lun.Mode.DescriptorSense = d;
        if (swp is { } s) lun.Mode.SoftwareWriteProtect = s;
    });
}
