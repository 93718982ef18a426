using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

/// <summary>GET LBA STATUS (SBC-3 5.6): mapped and deallocated extents from the handler.</summary>
internal static class ProvisioningCommands
{
    private const int MaxDescriptors = 512;

    public static async ValueTask GetLbaStatus(ScsiLun lun, ScsiTask task)
    {
        var alloc = Cdb.U32(task.CdbSpan, 10);
        var bs = lun.BlockSize;
        var count = lun.BlockCount;
        var lba = (long)task.Lba;
        var room = (int)Math.Clamp((alloc - 8) / 16, 1, MaxDescriptors);
        DataIn.Begin(task, 8 + 16 * room);
        var data = task.DataInBuffer!.Memory;
        var n = 0;
        var status = lun.Device.Provisioning;
        while (n < room && lba < count)
        {
            bool mapped;
            long blocks;
            if (status is null)
            {
                (mapped, blocks) = (true, count - lba); // fully provisioned, or no way to tell: everything is mapped
            }
            else
            {
                var (m, length) = await status.GetExtentAsync(lba * bs, (count - lba) * bs, task.AbortToken);
                mapped = m;
                blocks = Math.Max(1, length / bs);
            }
            blocks = Math.Min(blocks, uint.MaxValue);
            Describe(data.Span.Slice(8 + 16 * n, 16), lba, blocks, mapped);
            lba += blocks;
            n++;
        }
        Cdb.Put32(data.Span, 0, (uint)(4 + 16 * n));
        await DataIn.End(task, 8 + 16 * n, alloc);
    }

    private static void Describe(Span<byte> d, long lba, long blocks, bool mapped)
    {
        Cdb.Put64(d, 0, (ulong)lba);
        Cdb.Put32(d, 8, (uint)blocks);
        d[12] = (byte)(mapped ? 0 : 1); // PROVISIONING STATUS: 0 mapped, 1 deallocated
    }
}
