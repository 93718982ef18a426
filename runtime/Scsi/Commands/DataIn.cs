namespace HandlerRuntime.Scsi.Commands;

/// <summary>Builds parameter data for the initiator, honouring its ALLOCATION LENGTH.</summary>
internal static class DataIn
{
    /// <summary>A zeroed buffer of <paramref name="fullLength"/> bytes on the task.</summary>
    public static Span<byte> Begin(ScsiTask task, int fullLength)
    {
        var span = task.AllocateDataIn(fullLength).Span;
        span.Clear();
        return span;
    }

    /// <summary>Returns min(produced, allocation length) bytes (SPC-4 4.2.5.6: truncation is not an error).</summary>
    public static ValueTask End(ScsiTask task, int produced, long allocationLength)
    {
        task.DataInLength = (int)Math.Min(produced, allocationLength);
        return default;
    }
}
