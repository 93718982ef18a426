namespace HandlerRuntime.Scsi.Sanitize;

internal enum SanitizeKind
{
    /// <summary>Write an initialization pattern over every block, one or more passes (SBC-3 4.11.3).</summary>
    Overwrite = 1,
    /// <summary>Deallocate (or zero) every block (SBC-3 4.11.4).</summary>
    BlockErase = 2,
    /// <summary>Replace the key the device encrypts with, so nothing written before can be read (SBC-3 4.11.5).</summary>
    CryptoErase = 3,
}

/// <summary>What a SANITIZE asked for; also what is kept on disk while it runs, so a restart resumes it.</summary>
internal sealed record SanitizeRequest(SanitizeKind Kind, byte[] Pattern, bool Invert, int Passes);
