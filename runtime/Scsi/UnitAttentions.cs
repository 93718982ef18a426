using System.Collections.Concurrent;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi;

/// <summary>
/// Unit attention conditions queued per I_T nexus (SAM-5 5.14). A nexus seen for the
/// first time starts with POWER ON, RESET OCCURRED. Conditions are reported oldest
/// first; a repeated condition is not queued twice.
/// </summary>
internal sealed class UnitAttentions
{
    private const int MaxQueued = 8;
    private readonly ConcurrentDictionary<ItNexus, Queue> queues = new();

    /// <summary>Takes the oldest condition for <paramref name="nexus"/>, if any.</summary>
    public bool TryTake(ItNexus nexus, out SenseData sense)
    {
        var q = QueueFor(nexus);
        if (q.Count == 0)
        {
            sense = default;
            return false;
        }
        lock (q)
        {
            if (q.Count == 0)
            {
                sense = default;
                return false;
            }
            sense = q.Items[0];
            Array.Copy(q.Items, 1, q.Items, 0, --q.Count);
            return true;
        }
    }

    /// <summary>Looks at the oldest condition without taking it.</summary>
    public bool TryPeek(ItNexus nexus, out SenseData sense)
    {
        var q = QueueFor(nexus);
        lock (q)
        {
            sense = q.Count > 0 ? q.Items[0] : default;
            return q.Count > 0;
        }
    }

    /// <summary>Queues <paramref name="sense"/> for every known nexus except <paramref name="except"/>.</summary>
    public void EstablishForAll(SenseData sense, ItNexus? except = null)
    {
        foreach (var (nexus, q) in queues)
            if (nexus != except)
                Add(q, sense);
    }

    public void Establish(ItNexus nexus, SenseData sense) => Add(QueueFor(nexus), sense);

    /// <summary>Queues <paramref name="sense"/> for every known nexus that <paramref name="match"/> selects (reservation notices name nexuses by pattern).</summary>
    public void EstablishWhere(Func<ItNexus, bool> match, SenseData sense)
    {
        foreach (var (nexus, q) in queues)
            if (match(nexus))
                Add(q, sense);
    }

    /// <summary>Every I_T nexus that has sent this LU a command.</summary>
    public IEnumerable<ItNexus> KnownNexuses => queues.Keys;

    /// <summary>Whether <paramref name="nexus"/> has <paramref name="sense"/> (by ASC/ASCQ) queued.</summary>
    public bool Has(ItNexus nexus, SenseData sense)
    {
        var q = QueueFor(nexus);
        lock (q)
        {
            for (var i = 0; i < q.Count; i++)
                if (q.Items[i].Asc == sense.Asc && q.Items[i].Ascq == sense.Ascq)
                    return true;
        }
        return false;
    }

    /// <summary>Withdraws a queued condition that no longer applies.</summary>
    public void Withdraw(ItNexus nexus, SenseData sense)
    {
        var q = QueueFor(nexus);
        lock (q)
        {
            for (var i = 0; i < q.Count; i++)
            {
                if (q.Items[i].Asc != sense.Asc || q.Items[i].Ascq != sense.Ascq)
                    continue;
                Array.Copy(q.Items, i + 1, q.Items, i, q.Count - i - 1);
                q.Count--;
                return;
            }
        }
    }

    /// <summary>Drops every queued condition of <paramref name="nexus"/>.</summary>
    public void Clear(ItNexus nexus)
    {
        var q = QueueFor(nexus);
        lock (q) q.Count = 0;
    }

    private Queue QueueFor(ItNexus nexus)
        => queues.TryGetValue(nexus, out var q) ? q : queues.GetOrAdd(nexus, static _ => NewQueue());

    private static Queue NewQueue()
    {
        var q = new Queue();
        q.Items[0] = Sense.PowerOnReset;
        q.Count = 1;
        return q;
    }

    private static void Add(Queue q, SenseData sense)
    {
        lock (q)
        {
            for (var i = 0; i < q.Count; i++)
                if (q.Items[i].Asc == sense.Asc && q.Items[i].Ascq == sense.Ascq)
                    return;
            if (q.Count == MaxQueued)
                return; // SAM allows dropping; the oldest conditions are the ones that matter
            q.Items[q.Count++] = sense;
        }
    }

    private sealed class Queue
    {
        public readonly SenseData[] Items = new SenseData[MaxQueued];
        public volatile int Count;
    }
}
