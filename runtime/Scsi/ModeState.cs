namespace HandlerRuntime.Scsi;

/// <summary>
/// The changeable mode parameters of a LUN (SPC-4 7.5). Changes made by MODE SELECT
/// take effect on the next command: WCE off makes every write durable before GOOD,
/// SWP makes writes fail with DATA PROTECT, D_SENSE switches to descriptor sense.
/// </summary>
internal sealed class ModeState(bool writeCacheEnabled)
{
    /// <summary>Caching page WCE. Its default is the LUN's configured write-cache setting.</summary>
    public volatile bool WriteCacheEnabled = writeCacheEnabled;
    public readonly bool DefaultWriteCacheEnabled = writeCacheEnabled;

    /// <summary>Control page D_SENSE: descriptor-format sense data.</summary>
    public volatile bool DescriptorSense;

    /// <summary>Control page SWP: software write protect.</summary>
    public volatile bool SoftwareWriteProtect;
}
