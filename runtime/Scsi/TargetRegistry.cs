namespace HandlerRuntime.Scsi;

/// <summary>The targets this runtime serves, by name. Copy-on-write: fabrics read without locks.</summary>
public sealed class TargetRegistry
{
    public const string DefaultTargetName = "iqn.2026-11.org.handler-runtime:default";

    private readonly object gate = new();
    private volatile Dictionary<string, ScsiTarget> targets = new(StringComparer.OrdinalIgnoreCase);

    public TargetRegistry(string defaultTarget = DefaultTargetName)
    {
        DefaultName = defaultTarget;
        GetOrAdd(defaultTarget);
    }

    public string DefaultName { get; }

    public NexusTable Nexuses { get; } = new();

    public IReadOnlyCollection<ScsiTarget> All => targets.Values;

    public ScsiTarget? Find(string name) => targets.GetValueOrDefault(name);

    public ScsiTarget GetOrAdd(string name)
    {
        lock (gate)
        {
            if (targets.TryGetValue(name, out var t))
                return t;
            var copy = new Dictionary<string, ScsiTarget>(targets, StringComparer.OrdinalIgnoreCase) { [name] = t = new ScsiTarget(name) };
            targets = copy;
            return t;
        }
    }

    /// <summary>Removes a target that has no LUNs (the default target always stays).</summary>
    public bool TryRemove(string name)
    {
        lock (gate)
        {
            if (string.Equals(name, DefaultName, StringComparison.OrdinalIgnoreCase) || !targets.TryGetValue(name, out var t) || t.Luns.Count > 0)
                return false;
            var copy = new Dictionary<string, ScsiTarget>(targets, StringComparer.OrdinalIgnoreCase);
            copy.Remove(name);
            targets = copy;
            return true;
        }
    }
}
