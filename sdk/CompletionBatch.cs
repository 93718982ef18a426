namespace HandlerRuntime.Sdk;

/// <summary>
/// For a handler that completes several operations in a row on one thread (a queue drainer,
/// a completion poller): completions inside <c>using (CompletionBatch.Begin()) { ... }</c>
/// have their responses sent together when the batch ends, one network send per connection
/// instead of one per command. Optional; only a speed matter. Keep a batch short (it delays
/// the responses of what completed early in it) and never wait inside one for something a
/// response would unblock.
/// </summary>
public static class CompletionBatch
{
    [ThreadStatic]
    private static List<IDeferredSend>? deferred;
    [ThreadStatic]
    private static int depth;

    /// <summary>Opens a batch on this thread (batches nest: the outermost one sends).</summary>
    public static Scope Begin()
    {
        depth++;
        return new Scope(true);
    }

    /// <summary>
    /// For the runtime's fabrics: when a batch is open on this thread, <paramref name="send"/>
    /// runs when it ends and true is returned; otherwise false (send now).
    /// </summary>
    internal static bool TryDefer(IDeferredSend send)
    {
        if (depth == 0)
            return false;
        (deferred ??= []).Add(send);
        return true;
    }

    /// <summary>The end of a batch; dispose it (once) to send what it deferred.</summary>
    public readonly struct Scope : IDisposable
    {
        private readonly bool open;

        internal Scope(bool open) => this.open = open;

        /// <summary>Ends the batch; the outermost one sends everything deferred in it.</summary>
        public void Dispose()
        {
            if (!open || --depth > 0 || deferred is not { Count: > 0 } list)
                return;
            // The batch is closed: what the sends below complete is sent at once, and a batch
            // one of them opens starts a list of its own.
            deferred = null;
            foreach (var send in list)
                send.Send();
            list.Clear();
            deferred ??= list;
        }
    }
}

/// <summary>A fabric's pending send, run when the <see cref="CompletionBatch"/> it was deferred to ends.</summary>
internal interface IDeferredSend
{
    /// <summary>Sends what was queued; must not throw.</summary>
    void Send();
}
