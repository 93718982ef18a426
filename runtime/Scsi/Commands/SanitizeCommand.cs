using HandlerRuntime.Scsi.Sanitize;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

/// <summary>SANITIZE (SBC-3 5.26): OVERWRITE, BLOCK ERASE, CRYPTOGRAPHIC ERASE (on devices that encrypt: <see cref="ICryptoErase"/>) and EXIT FAILURE MODE.</summary>
internal static class SanitizeCommand
{
    public static ValueTask Overwrite(ScsiLun lun, ScsiTask task)
    {
        var length = Cdb.U16(task.CdbSpan, 7);
        var bs = lun.BlockSize;
        if (length < 5 || length > bs + 4)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(7)); // SBC-3: more than 4, at most a block plus 4
        task.RequireDataOut(length);
        var p = task.DataOutBuffer!.Span[..length];
        var passes = p[0] & 0x1F;
        var patternLength = Cdb.U16(p, 2);
        if ((p[0] & 0x60) != 0)
            throw new ScsiException(Sense.InvalidFieldInParameterList.WithFieldPointer(0, 6, inCdb: false)); // TEST is vendor specific
        if (passes == 0)
            throw new ScsiException(Sense.InvalidFieldInParameterList.WithFieldPointer(0, 4, inCdb: false));
        if (patternLength == 0 || patternLength > bs || patternLength + 4 != length)
            throw new ScsiException(Sense.InvalidFieldInParameterList.WithFieldPointer(2, inCdb: false));
        return Start(lun, task, new SanitizeRequest(SanitizeKind.Overwrite, p.Slice(4, patternLength).ToArray(), (p[0] & 0x80) != 0, passes));
    }

    public static ValueTask BlockErase(ScsiLun lun, ScsiTask task)
    {
        RequireNoParameters(task);
        return Start(lun, task, new SanitizeRequest(SanitizeKind.BlockErase, [], false, 1));
    }

    public static ValueTask CryptoErase(ScsiLun lun, ScsiTask task)
    {
        RequireNoParameters(task);
        return Start(lun, task, new SanitizeRequest(SanitizeKind.CryptoErase, [], false, 1));
    }

    public static ValueTask ExitFailureMode(ScsiLun lun, ScsiTask task)
    {
        RequireNoParameters(task);
        lun.Sanitizer.ExitFailureMode();
        return default;
    }

    private static void RequireNoParameters(ScsiTask task)
    {
        if (Cdb.U16(task.CdbSpan, 7) != 0)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(7));
    }

    /// <summary>With IMMED the command completes once the operation started; without, when it ends (an abort only stops the waiting).</summary>
    private static ValueTask Start(ScsiLun lun, ScsiTask task, SanitizeRequest request)
    {
        var immediate = (task.CdbSpan[1] & 0x80) != 0;
        var running = lun.Sanitizer.Start(request, immediate ? null : task);
        return immediate ? default : new ValueTask(WaitAsync(lun, running, task.AbortToken));
    }

    private static async Task WaitAsync(ScsiLun lun, Task running, CancellationToken abort)
    {
        await running.WaitAsync(abort);
        if (lun.Sanitizer.FailureSense is { } failed)
            throw new ScsiException(failed);
    }
}
