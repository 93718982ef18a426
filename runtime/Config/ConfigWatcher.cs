namespace HandlerRuntime.Config;

/// <summary>Calls back, debounced, when the config file is written, replaced or renamed into place.</summary>
public sealed class ConfigWatcher : IDisposable
{
    private readonly FileSystemWatcher watcher;
    private readonly Timer debounce;

    public ConfigWatcher(string path, TimeSpan delay, Action changed)
    {
        var full = Path.GetFullPath(path);
        debounce = new Timer(_ => changed(), null, Timeout.Infinite, Timeout.Infinite);
        watcher = new FileSystemWatcher(Path.GetDirectoryName(full)!, Path.GetFileName(full))
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.CreationTime,
        };
        void Kick(object? _, FileSystemEventArgs __) => debounce.Change(delay, Timeout.InfiniteTimeSpan);
        watcher.Changed += Kick;
        watcher.Created += Kick;
        watcher.Renamed += (s, e) => Kick(s, e);
        watcher.EnableRaisingEvents = true;
    }

    public void Dispose()
    {
        watcher.Dispose();
        debounce.Dispose();
    }
}
