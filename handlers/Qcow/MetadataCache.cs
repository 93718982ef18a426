namespace HandlerRuntime.Handlers.Qcow;

/// <summary>Which kind of cluster-sized table a cache entry holds; it decides how a dirty one may be written back.</summary>
internal enum TableKind
{
    L2,
    Refblock,
}

/// <summary>
/// An LRU cache of cluster-sized metadata tables (L2 tables and refcount blocks), keyed by
/// host offset, with write-back. Used only under the image's metadata lock.
/// A dirty refcount block may be written at any time (refcounts ahead of references only
/// leak). A dirty L2 table may not: evicting one runs the owner's full write-back first,
/// which makes the refcounts and data it points to durable before it is written.
/// </summary>
internal sealed class MetadataCache
{
    private readonly ImageStorage file;
    private readonly int clusterSize;
    private readonly int capacity;
    private readonly Func<ValueTask> writeBackAll;
    private readonly Dictionary<long, Table> tables = [];
    private readonly LinkedList<Table> lru = []; // most recently used first

    public MetadataCache(ImageStorage file, int clusterSize, long capacityBytes, Func<ValueTask> writeBackAll)
    {
        this.file = file;
        this.clusterSize = clusterSize;
        capacity = (int)Math.Max(8, capacityBytes / clusterSize);
        this.writeBackAll = writeBackAll;
    }


    /// <summary>True while the owner's write-back runs: eviction then never starts another.</summary>
    public bool InWriteBack { get; set; }

    /// <summary>One cached table. Pinned while a <see cref="Pin"/> is alive, so eviction cannot drop changes made through it.</summary>
    public sealed class Table
    {
        internal Table(long offset, byte[] data, TableKind kind)
        {
            Offset = offset;
            Data = data;
            Kind = kind;
        }

        public long Offset { get; }
        public byte[] Data { get; }
        public TableKind Kind { get; }
        public bool Dirty { get; set; }
        internal int Pins { get; set; }
        internal LinkedListNode<Table>? Node { get; set; }
    }

    /// <summary>A pinned table; dispose to unpin.</summary>
    public readonly struct Pin : IDisposable
    {
        public Pin(Table table)
        {
            Table = table;
            table.Pins++;
        }

        public Table Table { get; }
        public byte[] Data => Table.Data;
        public void MarkDirty() => Table.Dirty = true;
        public void Dispose() => Table.Pins--;
    }

    /// <summary>The table at <paramref name="offset"/>, read from the file if it is not cached.</summary>
    public async ValueTask<Pin> GetAsync(long offset, TableKind kind)
    {
        if (tables.TryGetValue(offset, out var t))
        {
            if (t.Kind != kind)
                throw new InvalidDataException($"host cluster 0x{offset:x} is used both as an L2 table and as a refcount block; the image is damaged.");
            Touch(t);
            return new Pin(t);
        }
        var data = new byte[clusterSize];
        await file.ReadAsync(offset, data);
        if (tables.TryGetValue(offset, out t)) // loaded meanwhile (cannot happen under the lock, but stay safe)
            return new Pin(t);
        t = new Table(offset, data, kind);
        var pin = new Pin(t); // pinned before eviction so it cannot evict itself
        Add(t);
        await EvictAsync();
        return pin;
    }

    /// <summary>Adds a table whose content the caller has just created (and written, if it must be durable).</summary>
    public async ValueTask<Pin> InsertAsync(long offset, byte[] data, TableKind kind, bool dirty)
    {
        Drop(offset);
        var t = new Table(offset, data, kind) { Dirty = dirty };
        var pin = new Pin(t);
        Add(t);
        await EvictAsync();
        return pin;
    }

    /// <summary>Forgets a table (its cluster was freed or rewritten behind the cache).</summary>
    public void Drop(long offset)
    {
        if (tables.Remove(offset, out var t) && t.Node is not null)
            lru.Remove(t.Node);
    }

    public void Clear()
    {
        tables.Clear();
        lru.Clear();
    }

    public List<Table> DirtyTables(TableKind kind) => tables.Values.Where(t => t.Dirty && t.Kind == kind).OrderBy(t => t.Offset).ToList();


    public async ValueTask WriteAsync(Table t)
    {
        await file.WriteAsync(t.Offset, t.Data);
        t.Dirty = false;
    }

    private void Add(Table t)
    {
        tables[t.Offset] = t;
        t.Node = lru.AddFirst(t);
    }

    private void Touch(Table t)
    {
        if (t.Node is not null && t.Node != lru.First)
        {
            lru.Remove(t.Node);
            lru.AddFirst(t.Node);
        }
    }

    private async ValueTask EvictAsync()
    {
        while (tables.Count > capacity)
        {
            Table? victim = null;
            for (var n = lru.Last; n is not null; n = n.Previous)
                if (n.Value.Pins == 0 && !(InWriteBack && n.Value.Dirty && n.Value.Kind == TableKind.L2))
                {
                    victim = n.Value;
                    break;
                }
            if (victim is null)
                return; // everything is pinned: stay over capacity until pins are released
            if (victim.Dirty)
            {
                if (victim.Kind == TableKind.Refblock)
                    await WriteAsync(victim);
                else
                    await writeBackAll();
            }
            if (victim.Dirty || victim.Pins != 0)
                return; // the write-back could not clean it: keep it rather than lose changes
            Drop(victim.Offset);
        }
    }
}
