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

    // For each nexus with MODE PARAMETERS CHANGED pending: the parameters it last could have seen.
    private readonly Dictionary<ItNexus, int> seenBefore = [];

    private int Snapshot => (WriteCacheEnabled ? 1 : 0) | (DescriptorSense ? 2 : 0) | (SoftwareWriteProtect ? 4 : 0);

    /// <summary>Applies a change made through <paramref name="by"/> and tells the other nexuses (SPC-4 7.5.1).</summary>
    /// <remarks>
    /// A nexus told of a change that is then undone (set and restore, as initiators probing a
    /// page do) has nothing stale to learn: with no command in between it could not have seen
    /// the interim values, so its pending MODE PARAMETERS CHANGED is withdrawn.
    /// </remarks>
    public void Change(ItNexus by, UnitAttentions unitAttentions, Action apply)
    {
        lock (seenBefore)
        {
            var before = Snapshot;
            apply();
            var now = Snapshot;
            if (now == before)
                return;
            foreach (var nexus in unitAttentions.KnownNexuses)
            {
                if (nexus == by)
                    continue;
                if (!unitAttentions.Has(nexus, Sdk.Sense.ModeParametersChanged))
                {
                    seenBefore[nexus] = before;
                    unitAttentions.Establish(nexus, Sdk.Sense.ModeParametersChanged);
                }
                else if (seenBefore.TryGetValue(nexus, out var seen) && seen == now)
                {
                    unitAttentions.Withdraw(nexus, Sdk.Sense.ModeParametersChanged);
                    seenBefore.Remove(nexus);
                }
            }
        }
    }
}
