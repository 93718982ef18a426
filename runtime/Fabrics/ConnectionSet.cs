using System.Collections.Concurrent;
using Serilog;

namespace HandlerRuntime.Fabrics;

/// <summary>
/// A fabric's connections, each from before it runs until its run has ended, whatever ended it:
/// the one count behind the fabric's connection limit, `hrt status` and shutdown. A connection
/// is added before its run starts (one that ends at once must not be removed before it was
/// added, and then counted forever), and released in the finally of its own serve task (a run
/// or a teardown step that throws must not keep it). See issue 19.
/// </summary>
internal sealed class ConnectionSet<T>(string fabric, ILogger log) where T : class
{
    private readonly ConcurrentDictionary<T, Task> running = new();

    public int Count => running.Count;

    public ICollection<T> All => running.Keys;

    /// <summary>Runs <paramref name="run"/> on the thread pool; <paramref name="released"/> runs after it ended and the connection left the set.</summary>
    public void Start(T connection, Func<Task> run, string remote, Action? released = null)
    {
        running[connection] = Task.CompletedTask;
        var task = Task.Run(() => ServeAsync(connection, run, remote, released));
        running.TryUpdate(connection, task, Task.CompletedTask);
    }

    private async Task ServeAsync(T connection, Func<Task> run, string remote, Action? released)
    {
        try
        {
            await run();
        }
        catch (Exception e)
        {
            log.Error(e, "{Fabric} {Remote}: connection ended by an internal error", fabric, remote);
        }
        finally
        {
            running.TryRemove(connection, out _);
            released?.Invoke();
        }
    }

    /// <summary>Waits, at most <paramref name="timeout"/>, for every run to end.</summary>
    public Task WhenAllEndedAsync(TimeSpan timeout) => Task.WhenAny(Task.WhenAll(running.Values.ToArray()), Task.Delay(timeout));
}
