using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi;

/// <summary>
/// The medium of a removable LU (RMB=1): loaded or ejected by START STOP UNIT with LOEJ,
/// and held in place while any I_T nexus has PREVENT set (SBC-3 5.13, 5.21). PREVENT
/// ends with the nexus that set it (loss or logout), and with a reset. A non-removable
/// LU records PREVENT too, which then has no effect.
/// </summary>
internal sealed class RemovableMedium(bool removable)
{
    private readonly HashSet<ItNexus> preventing = [];

    public bool Removable { get; } = removable;

    public bool Loaded { get; private set; } = true;

    /// <summary>NOT READY, MEDIUM NOT PRESENT while ejected.</summary>
    public SenseData? NotPresentSense => Loaded ? null : new SenseData(SenseKey.NotReady, 0x3A, 0x00);

    public void SetPrevent(ItNexus nexus, bool prevent)
    {
        lock (preventing)
        {
            if (prevent)
                preventing.Add(nexus);
            else
                preventing.Remove(nexus);
        }
    }

    public bool Prevented
    {
        get { lock (preventing) return preventing.Count > 0; }
    }

    /// <summary>Loads or ejects; refused with MEDIUM REMOVAL PREVENTED (53h/02h) while prevented.</summary>
    public void LoadOrEject(bool load)
    {
        if (Prevented)
            throw new ScsiException(new SenseData(SenseKey.IllegalRequest, 0x53, 0x02));
        Loaded = load;
    }

    public void NexusLost(ItNexus nexus) => SetPrevent(nexus, false);

    public void Reset()
    {
        lock (preventing) preventing.Clear();
    }
}
