using HandlerRuntime.Scsi.Reservations;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi;

/// <summary>
/// The checks every command passes, in SAM order, before the handler's hook and the
/// generic emulation see it: unit attention, known opcode, reservation conflict, CDB
/// fields, readiness, write protection, LBA range.
/// </summary>
internal static class CommandDispatcher
{
    public static string NameOf(ReadOnlySpan<byte> cdb)
        => CommandTable.Find(cdb)?.Name ?? (cdb.IsEmpty ? "empty CDB" : $"opcode {cdb[0]:X2}h");

    public static ValueTask DispatchAsync(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        var info = task.Command;

        if ((info is null || (info.Flags & CommandFlags.IgnoresUnitAttention) == 0)
            && lun.UnitAttentions.TryTake(task.Nexus, out var ua))
        {
            lun.Fail(task, ua);
            return default;
        }

        // While a sanitize runs only the commands that ignore unit attentions (INQUIRY, REPORT
        // LUNS, REQUEST SENSE) are answered, the same three SBC-3 4.11.2 lets through.
        if (lun.Sanitizer.NotReadySense is { } sanitizing && (info is null || (info.Flags & CommandFlags.IgnoresUnitAttention) == 0))
        {
            lun.Fail(task, sanitizing);
            return default;
        }

        // ALUA: outside the active states only the commands SPC-4 5.15.2.4 lists are answered.
        if (lun.Alua.Refusal(info) is { } notActive)
        {
            lun.Fail(task, notActive);
            return default;
        }

        if (info is null)
            return UnknownAsync(lun, task);

        // A reservation held by another I_T nexus refuses the command before its fields are
        // looked at: RESERVATION CONFLICT, no sense (SPC-4 5.13.1, SBC-3 4.17).
        if (lun.Reservations.Conflicts(task.Nexus, info.Reservation))
        {
            task.Status = ScsiStatus.ReservationConflict;
            return default;
        }

        if (Validate(info, cdb) is { } invalid)
        {
            lun.Fail(task, invalid);
            return default;
        }

        if ((info.Flags & CommandFlags.MediumAccess) != 0 && lun.NotReadySense is { } notReady)
        {
            lun.Fail(task, notReady);
            return default;
        }

        // After a failed sanitize the medium is unusable until a sanitize succeeds or failure mode is left.
        if ((info.Flags & CommandFlags.MediumAccess) != 0 && info.Opcode != 0x48 && lun.Sanitizer.FailureSense is { } failed)
        {
            lun.Fail(task, failed);
            return default;
        }

        if ((info.Flags & CommandFlags.Writes) != 0 && lun.WriteProtected)
        {
            lun.Fail(task, Sense.WriteProtected);
            return default;
        }

        if (info.Range != RangeLayout.None && !CheckRange(lun, task, info, cdb))
            return default;

        if (lun.Hook is not null)
            return HookThenEmulateAsync(lun, task, info);
        return info.Execute(lun, task);
    }

    /// <summary>Checks the CDB's length and that no bit outside the usage data is set.</summary>
    public static SenseData? Validate(CommandInfo info, ReadOnlySpan<byte> cdb)
    {
        var usage = info.Usage;
        if (cdb.Length < usage.Length)
            return Sense.InvalidFieldInCdb.WithFieldPointer(0);
        for (var i = 1; i < usage.Length; i++)
        {
            var bad = cdb[i] & ~usage[i];
            if (bad != 0)
                return Sense.InvalidFieldInCdb.WithFieldPointer(i, Cdb.HighestBit(bad));
        }
        return null;
    }

    private static bool CheckRange(ScsiLun lun, ScsiTask task, CommandInfo info, ReadOnlySpan<byte> cdb)
    {
        var (lba, blocks) = Cdb.Range(cdb, info.Range);
        if (blocks == 0 && (info.Flags & CommandFlags.ZeroMeans256) != 0)
            blocks = 256;
        if (!lun.Contains(lba, blocks))
        {
            lun.Fail(task, Sense.LbaOutOfRange);
            return false;
        }
        task.Lba = lba;
        task.Blocks = blocks;
        return true;
    }

    private static async ValueTask UnknownAsync(ScsiLun lun, ScsiTask task)
    {
        if (lun.Hook is not null)
        {
            // What the handler alone knows is judged as a write: under a reservation that
            // bars this nexus it must not reach the medium.
            if (lun.Reservations.Conflicts(task.Nexus, ReservationRule.UnknownCommand))
            {
                task.Status = ScsiStatus.ReservationConflict;
                return;
            }
            if (await OfferToHookAsync(lun, task))
                return;
        }
        var op = task.CdbSpan.IsEmpty ? (byte)0 : task.CdbSpan[0];
        // An opcode we know with an unknown service action is a bad field, not a bad opcode.
        var known = CommandTable.OffersServiceActionsOf(op, lun);
        lun.Fail(task, known ? Sense.InvalidFieldInCdb.WithFieldPointer(1, 4) : Sense.InvalidOpcode);
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private static async ValueTask HookThenEmulateAsync(ScsiLun lun, ScsiTask task, CommandInfo info)
    {
        if (!await OfferToHookAsync(lun, task))
            await info.Execute(lun, task);
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<bool> OfferToHookAsync(ScsiLun lun, ScsiTask task)
    {
        task.HandlerDataIn = task.ExpectedDataInLength > 0 ? task.AllocateDataIn(task.ExpectedDataInLength) : default;
        task.DataInLength = 0;
        var outcome = await lun.Hook!.HandleCommandAsync(task, task.AbortToken);
        task.HandlerDataIn = default;
        if (!outcome.Handled)
            return false;
        task.DataInLength = Math.Min(outcome.DataInLength, task.ExpectedDataInLength);
        if (outcome.Status == ScsiStatus.CheckCondition)
            lun.Fail(task, outcome.Sense);
        else
            task.Status = outcome.Status;
        return true;
    }
}
