using HandlerRuntime.Scsi;

namespace HandlerRuntime.Fabrics.Iscsi.Sessions;

/// <summary>Live sessions by TSIH, and by initiator name + ISID + target for reinstatement (RFC 7143 6.3.5).</summary>
internal sealed class SessionTable
{
    private readonly object gate = new();
    private readonly Dictionary<ushort, IscsiSession> byTsih = new();
    private ushort lastTsih;

    public int Count { get { lock (gate) return byTsih.Count; } }

    public IscsiSession[] All { get { lock (gate) return byTsih.Values.ToArray(); } }

    /// <summary>A TSIH not in use and never 0.</summary>
    public ushort Allocate(Func<ushort, IscsiSession> create)
    {
        lock (gate)
        {
            do
            {
                lastTsih++;
            } while (lastTsih == 0 || byTsih.ContainsKey(lastTsih));
            var session = create(lastTsih);
            byTsih.Add(lastTsih, session);
            return lastTsih;
        }
    }

    public IscsiSession? Find(ushort tsih)
    {
        lock (gate)
            return byTsih.GetValueOrDefault(tsih);
    }

    public IscsiSession? FindSame(string initiatorName, ulong isid, ScsiTarget? target)
    {
        lock (gate)
            return byTsih.Values.FirstOrDefault(s => s.Isid == isid && s.Target == target && !s.IsClosed
                && string.Equals(s.InitiatorName, initiatorName, StringComparison.OrdinalIgnoreCase));
    }

    public void Remove(IscsiSession session)
    {
        lock (gate)
            if (byTsih.TryGetValue(session.Tsih, out var s) && s == session)
                byTsih.Remove(session.Tsih);
    }
}
