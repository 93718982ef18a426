using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Alua;

/// <summary>
/// An LU's asymmetric access state through its target port group (SPC-4 5.15). Each target
/// here has one port group, so the state is the LU's. It changes explicitly (SET TARGET PORT
/// GROUPS from an initiator) or implicitly (an operator, e.g. during failover, with
/// <c>hrt lun alua</c>); either way every other I_T nexus is told (2Ah/06h) and commands
/// the new state does not allow are refused with the NOT READY code for that state.
/// </summary>
internal sealed class AluaPortGroup
{
    private volatile int state = (int)AsymmetricAccessState.ActiveOptimized;

    public AsymmetricAccessState State => (AsymmetricAccessState)state;

    /// <summary>REPORT TARGET PORT GROUPS STATUS CODE: 0 none, 1 changed by SET TARGET PORT GROUPS, 2 changed implicitly.</summary>
    public byte StatusCode { get; private set; }

    public void Change(AsymmetricAccessState to, bool explicitly, ItNexus? by, UnitAttentions unitAttentions)
    {
        var from = (AsymmetricAccessState)Interlocked.Exchange(ref state, (int)to);
        StatusCode = (byte)(explicitly ? 1 : 2);
        if (from != to)
            unitAttentions.EstablishForAll(Sense.AsymmetricAccessStateChanged, except: by);
    }

    /// <summary>Why <paramref name="command"/> cannot run in the current state, or null when it can.</summary>
    public SenseData? Refusal(CommandInfo? command)
    {
        var s = State;
        if (s is AsymmetricAccessState.ActiveOptimized or AsymmetricAccessState.ActiveNonOptimized)
            return null;
        // What each state still answers is a column of the command table (SPC-4 5.15.2.4.4-7).
        var flags = command?.Flags ?? CommandFlags.None;
        var always = (flags & CommandFlags.AluaAnyState) == CommandFlags.AluaAnyState;
        var unavailable = (flags & CommandFlags.AluaUnavailable) == CommandFlags.AluaUnavailable;
        var standby = (flags & CommandFlags.AluaStandby) != 0;
        return s switch
        {
            AsymmetricAccessState.Standby when !standby => new SenseData(SenseKey.NotReady, 0x04, 0x0B),
            AsymmetricAccessState.Unavailable when !unavailable => new SenseData(SenseKey.NotReady, 0x04, 0x0C),
            AsymmetricAccessState.Transitioning when !always => Sense.NotReadyTransitioning,
            _ => null,
        };
    }
}
