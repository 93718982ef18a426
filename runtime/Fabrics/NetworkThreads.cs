namespace HandlerRuntime.Fabrics;

/// <summary>
/// How socket completions reach the fabrics. By default .NET hands every completion from its
/// epoll threads to the thread pool: one thread hop (a wake-up, a context switch) per receive.
/// The daemon asks for inline completions instead, so a connection's reader runs on the epoll
/// thread itself, as an event loop does; it measured about half the CPU per command at queue
/// depth 1 (docs/performance.md). What must not run there is kept off: the sessions hop to
/// the pool for every command other than READ and WRITE on a device that declares
/// <see cref="Sdk.DeviceCapabilities.NonBlocking"/>, and nothing on the reader's path blocks.
/// </summary>
public static class NetworkThreads
{
    private const string InlineCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>
    /// Turns inline completions on unless the environment already says (=0 turns them off).
    /// The runtime reads the variable once, when its first socket starts: call before any
    /// socket exists.
    /// </summary>
    public static void PreferInlineCompletions()
    {
        if (Environment.GetEnvironmentVariable(InlineCompletions) is null)
            Environment.SetEnvironmentVariable(InlineCompletions, "1");
    }

    /// <summary>True on a thread of the thread pool; false on a socket engine's epoll thread (inline completions).</summary>
    public static bool OnThreadPool => Thread.CurrentThread.IsThreadPoolThread;
}
