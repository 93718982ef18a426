using System.Diagnostics;
using System.Text.Json;
using HandlerRuntime.Buffers;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Sanitize;

/// <summary>
/// The LU's sanitize operation (SBC-3 4.11). It runs in the background, owned by the LU and
/// not by the command that started it: aborts, resets and the loss of the initiator's
/// session do not stop it, and a marker in the LU's state directory makes a restarted
/// daemon resume it. While it runs every command but INQUIRY, REPORT LUNS and REQUEST
/// SENSE is refused with NOT READY, SANITIZE IN PROGRESS and a progress indication.
/// Overwrite is paced to a configurable rate so that erasing one LU cannot starve the
/// others sharing the storage. A sanitize that fails leaves the LU in failure mode until
/// a later one succeeds or EXIT FAILURE MODE is sent.
/// </summary>
internal sealed class SanitizeOperation
{
    private const int ChunkBytes = 1 << 20;
    private readonly ScsiLun lun;
    private readonly string? markerPath;
    private Task? running;
    private int progress; // 0-65535

    public SanitizeOperation(ScsiLun lun, string? stateDirectory)
    {
        this.lun = lun;
        markerPath = stateDirectory is null ? null : Path.Combine(stateDirectory, "sanitize.json");
    }

    /// <summary>Overwrite speed limit in bytes per second; 0 = as fast as the device goes.</summary>
    public long BytesPerSecond { get; set; } = 128L << 20;

    public bool InProgress => running is { IsCompleted: false };

    public bool FailureMode { get; private set; }

    /// <summary>NOT READY, SANITIZE IN PROGRESS (04h/1Bh) with how far it got, while running.</summary>
    public SenseData? NotReadySense => InProgress ? new SenseData(SenseKey.NotReady, 0x04, 0x1B).WithProgress((ushort)Volatile.Read(ref progress)) : null;

    /// <summary>MEDIUM ERROR, SANITIZE COMMAND FAILED (31h/03h) for medium access while in failure mode.</summary>
    public SenseData? FailureSense => FailureMode ? new SenseData(SenseKey.MediumError, 0x31, 0x03) : null;

    /// <summary>
    /// Starts a sanitize; the returned task completes when it has finished (successfully or
    /// not). From this moment new commands are refused; the erase itself begins once the
    /// commands already running, other than <paramref name="command"/>, have finished.
    /// </summary>
    public Task Start(SanitizeRequest request, ScsiTask? command = null)
    {
        lock (this)
        {
            if (InProgress)
                throw new ScsiException(NotReadySense!.Value);
            FailureMode = false;
            Volatile.Write(ref progress, 0);
            SaveMarker(request);
            running = Task.Run(() => RunAsync(request, command));
            return running;
        }
    }

    /// <summary>Resumes a sanitize a previous run of the daemon did not finish.</summary>
    public void ResumeIfInterrupted()
    {
        if (markerPath is null || !File.Exists(markerPath))
            return;
        SanitizeRequest? request;
        try
        {
            request = JsonSerializer.Deserialize<SanitizeRequest>(File.ReadAllText(markerPath));
        }
        catch (JsonException e)
        {
            lun.Log.Error("LUN {Lun}: the interrupted sanitize in {File} cannot be read ({Reason}); the LU stays in sanitize failure mode", lun.Name, markerPath, e.Message);
            FailureMode = true;
            return;
        }
        if (request is null)
            return;
        lun.Log.Warning("LUN {Lun}: resuming a {Kind} sanitize that was interrupted", lun.Name, request.Kind);
        Start(request);
    }

    public void ExitFailureMode() => FailureMode = false;

    private async Task RunAsync(SanitizeRequest request, ScsiTask? command)
    {
        var started = Stopwatch.StartNew();
        try
        {
            await lun.WaitForOtherCommandsAsync(command);
            switch (request.Kind)
            {
                case SanitizeKind.BlockErase:
                    await EraseAsync();
                    break;
                case SanitizeKind.CryptoErase:
                    // The data stays where it is, unreadable: only its key is replaced.
                    await lun.Device.CryptoErase!.ChangeKeyAsync(CancellationToken.None);
                    Volatile.Write(ref progress, 65535);
                    break;
                default:
                    await OverwriteAsync(request);
                    break;
            }
            await lun.Device.FlushAsync(CancellationToken.None);
            DeleteMarker();
            lun.Log.Information("LUN {Lun}: {Kind} sanitize finished in {Seconds:F1} s", lun.Name, request.Kind, started.Elapsed.TotalSeconds);
        }
        catch (Exception e)
        {
            FailureMode = true;
            DeleteMarker();
            lun.Log.Error(e, "LUN {Lun}: {Kind} sanitize failed; the LU is in sanitize failure mode until a sanitize succeeds or EXIT FAILURE MODE", lun.Name, request.Kind);
        }
    }

    private async Task EraseAsync()
    {
        var size = lun.Geometry.SizeBytes;
        if (lun.Device.Has(DeviceCapabilities.Unmap | DeviceCapabilities.UnmapReadsZeroes))
        {
            await lun.Device.UnmapAsync(0, size, CancellationToken.None);
        }
        else if (lun.Device.Has(DeviceCapabilities.Unmap))
        {
            // Unmapped blocks of this device may still read back their old data (a key still
            // decrypts it, a store keeps it): make the old data unreadable first, then deallocate,
            // so GET LBA STATUS shows the erased LU thin as block erase leaves it.
            if (lun.Device.CryptoErase is { } crypto)
                await crypto.ChangeKeyAsync(CancellationToken.None);
            else
                await lun.Device.WriteZeroesAsync(0, size, ZeroFlags.None, CancellationToken.None);
            await lun.Device.UnmapAsync(0, size, CancellationToken.None);
        }
        else if (lun.Device.Has(DeviceCapabilities.WriteZeroes))
            await lun.Device.WriteZeroesAsync(0, size, ZeroFlags.MayUnmap, CancellationToken.None);
        else
            await OverwriteAsync(new SanitizeRequest(SanitizeKind.Overwrite, [0], false, 1)); // zeros written at the paced rate
        Volatile.Write(ref progress, 65535);
    }

    private async Task OverwriteAsync(SanitizeRequest request)
    {
        var size = lun.Geometry.SizeBytes;
        var chunk = (int)Math.Min(size, ChunkBytes);
        using var buffer = BufferPool.Shared.Rent(chunk);
        var total = size * request.Passes;
        var clock = Stopwatch.StartNew();
        long done = 0;
        for (var pass = 0; pass < request.Passes; pass++)
        {
            Fill(buffer.Span, request.Pattern, invert: request.Invert && pass % 2 == 1);
            for (long at = 0; at < size; at += chunk)
            {
                var n = (int)Math.Min(chunk, size - at);
                await lun.Device.WriteAsync(at, buffer.Memory[..n], WriteFlags.None, CancellationToken.None);
                done += n;
                Volatile.Write(ref progress, (int)(done * 65535 / total));
                if (BytesPerSecond > 0)
                {
                    var due = TimeSpan.FromSeconds((double)done / BytesPerSecond) - clock.Elapsed;
                    if (due > TimeSpan.Zero)
                        await Task.Delay(due);
                }
            }
        }
    }

    private static void Fill(Span<byte> span, byte[] pattern, bool invert)
    {
        for (var at = 0; at < span.Length; at += pattern.Length)
            pattern.AsSpan(0, Math.Min(pattern.Length, span.Length - at)).CopyTo(span[at..]);
        if (invert)
            for (var i = 0; i < span.Length; i++)
                span[i] = (byte)~span[i];
    }

    private void SaveMarker(SanitizeRequest request)
    {
        if (markerPath is null)
            return;
        DurableFile.Replace(markerPath, JsonSerializer.SerializeToUtf8Bytes(request)); // a crash must find it, to resume
    }

    private void DeleteMarker()
    {
        if (markerPath is not null)
            DurableFile.Delete(markerPath);
    }
}
