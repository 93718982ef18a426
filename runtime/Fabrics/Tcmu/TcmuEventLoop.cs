using Serilog;

namespace HandlerRuntime.Fabrics.Tcmu;

/// <summary>
/// The TCMU fabric's one event loop: a dedicated thread in poll(2) on the netlink socket and
/// every device's UIO fd (no thread per device, as tcmu-runner has), plus an eventfd that wakes
/// it to change the set or run work posted to it. Callbacks run on this thread and must not
/// block; commands that may wait leave it for the thread pool.
/// </summary>
internal sealed unsafe class TcmuEventLoop : IDisposable
{
    private readonly ILogger log;
    private readonly int wakeFd;
    private readonly object gate = new();
    private readonly Dictionary<int, Action<short>> sources = [];
    private readonly Queue<Action> posted = new();
    private readonly Thread thread;
    private bool changed = true;
    private bool stopping;

    public TcmuEventLoop(ILogger log)
    {
        this.log = log;
        wakeFd = Libc.EventFd(0, Libc.EfdNonBlock | Libc.EfdCloExec);
        if (wakeFd < 0)
            throw new IOException($"eventfd failed: {Libc.Describe(Libc.Errno)}");
        thread = new Thread(Run) { IsBackground = true, Name = "tcmu event loop" };
    }

    public bool OnLoopThread => Thread.CurrentThread == thread;

    public void Start() => thread.Start();

    /// <summary>Watches <paramref name="fd"/> for POLLIN; <paramref name="onReady"/> gets the returned events.</summary>
    public void Add(int fd, Action<short> onReady)
    {
        lock (gate)
        {
            sources[fd] = onReady;
            changed = true;
        }
        Wake();
    }

    /// <summary>Stops watching <paramref name="fd"/>; once the task completes, its callback will not run again.</summary>
    public Task RemoveAsync(int fd) => InvokeAsync(() =>
    {
        lock (gate)
        {
            sources.Remove(fd);
            changed = true;
        }
    });

    /// <summary>Runs <paramref name="action"/> on the loop thread (at once when called there).</summary>
    public Task InvokeAsync(Action action)
    {
        if (OnLoopThread)
        {
            action();
            return Task.CompletedTask;
        }
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (gate)
        {
            if (stopping || !thread.IsAlive)
            {
                action(); // the loop is gone: nothing can race with the caller any more
                return Task.CompletedTask;
            }
            posted.Enqueue(() =>
            {
                try
                {
                    action();
                    done.SetResult();
                }
                catch (Exception e)
                {
                    done.SetException(e);
                }
            });
        }
        Wake();
        return done.Task;
    }

    private void Wake()
    {
        ulong one = 1;
        Libc.Write(wakeFd, &one, 8);
    }

    private void Run()
    {
        var fds = Array.Empty<Libc.PollFd>();
        var handlers = Array.Empty<Action<short>?>();
        var work = new List<Action>();
        while (true)
        {
            lock (gate)
            {
                if (stopping)
                    break;
                while (posted.TryDequeue(out var a))
                    work.Add(a);
            }
            foreach (var a in work)
                a();
            work.Clear();
            lock (gate)
            {
                if (changed)
                {
                    fds = new Libc.PollFd[sources.Count + 1];
                    handlers = new Action<short>?[sources.Count + 1];
                    fds[0] = new Libc.PollFd { Fd = wakeFd, Events = Libc.PollIn };
                    var i = 1;
                    foreach (var (fd, h) in sources)
                    {
                        fds[i] = new Libc.PollFd { Fd = fd, Events = Libc.PollIn };
                        handlers[i++] = h;
                    }
                    changed = false;
                }
            }
            int n;
            fixed (Libc.PollFd* p = fds)
                n = Libc.Poll(p, (nuint)fds.Length, -1);
            if (n < 0)
            {
                var e = Libc.Errno;
                if (e == Libc.EINTR)
                    continue;
                log.Error("TCMU: poll failed ({Reason}); the event loop stops", Libc.Describe(e));
                break;
            }
            if (fds[0].REvents != 0)
            {
                ulong count;
                Libc.Read(wakeFd, &count, 8);
            }
            for (var i = 1; i < fds.Length; i++)
            {
                var revents = fds[i].REvents;
                if (revents == 0)
                    continue;
                fds[i].REvents = 0;
                try
                {
                    handlers[i]!(revents);
                }
                catch (Exception e)
                {
                    log.Error(e, "TCMU: the handler of fd {Fd} failed", fds[i].Fd);
                }
            }
        }
        // Whatever was posted after the last turn still runs (a removal waiting on it).
        lock (gate)
            while (posted.TryDequeue(out var a))
                work.Add(a);
        foreach (var a in work)
            a();
    }

    public void Dispose()
    {
        lock (gate)
            stopping = true;
        Wake();
        if (thread.IsAlive && !OnLoopThread)
            thread.Join();
        Libc.Close(wakeFd);
    }
}
