namespace HandlerRuntime.Scsi;

/// <summary>
/// The LUN's task set: admits commands in arrival order under SAM's task attributes
/// (SIMPLE run concurrently, ORDERED waits for everything before it and holds back
/// everything after it, HEAD OF QUEUE runs at once), caps concurrency for devices that
/// serialize requests, and quiesces the LUN for hot upgrade, resize and delete with the
/// same mechanism (a pause holds new commands while in-flight ones finish).
/// The fast path (nothing waiting, nothing ordered) is one uncontended lock and no allocation.
/// </summary>
internal sealed class TaskSet(int maxConcurrent)
{
    private readonly object gate = new();
    private ScsiTask? head, tail;
    private int running;
    private int waiting;
    private bool exclusiveRunning;
    private int pauses;
    private TaskCompletionSource? drained;
    private List<(Func<bool> Done, TaskCompletionSource Signal)>? watchers; // only while someone waits (SANITIZE, task management)

    public int MaxConcurrent { get; set; } = maxConcurrent;

    public int Running { get { lock (gate) return running; } }

    /// <summary>Adds a task; true when it may run now, false when it must await admission.</summary>
    public bool TryEnter(ScsiTask task)
    {
        lock (gate)
        {
            Append(task);
            task.Exclusive |= task.Attribute == TaskAttribute.Ordered; // atomic commands arrive already exclusive
            // FIFO among waiters, except HEAD OF QUEUE, which overtakes everything waiting.
            if ((waiting == 0 || task.Attribute == TaskAttribute.HeadOfQueue) && CanStart(task))
            {
                Start(task);
                return true;
            }
            task.Waiting = true;
            waiting++;
            return false;
        }
    }

    /// <summary>Removes a finished task and admits whatever may now run.</summary>
    public void Leave(ScsiTask task)
    {
        TaskCompletionSource? nowDrained = null;
        List<TaskCompletionSource>? done = null;
        lock (gate)
        {
            Remove(task);
            running--;
            if (task.Exclusive)
                exclusiveRunning = false;
            AdmitWaiters();
            if (pauses > 0 && running == 0)
            {
                nowDrained = drained;
                drained = null;
            }
            if (watchers is not null)
                Notify(ref done);
        }
        nowDrained?.TrySetResult();
        if (done is not null)
            foreach (var signal in done)
                signal.TrySetResult();
    }

    /// <summary>
    /// Completes when <paramref name="done"/> holds: checked now and after each task leaves, under
    /// the set's lock (so it sees the set as it is; it must be quick and may use <see cref="Find"/>).
    /// Costs a task's leaving nothing while nobody waits.
    /// </summary>
    public Task WhenAsync(Func<bool> done)
    {
        lock (gate)
        {
            if (done())
                return Task.CompletedTask;
            var signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            (watchers ??= []).Add((done, signal));
            return signal.Task;
        }
    }

    private void Notify(ref List<TaskCompletionSource>? done)
    {
        for (var i = watchers!.Count - 1; i >= 0; i--)
            if (watchers[i].Done())
            {
                (done ??= []).Add(watchers[i].Signal);
                watchers.RemoveAt(i);
            }
        if (watchers.Count == 0)
            watchers = null;
    }

    /// <summary>Holds new commands and completes when none is running. Pair with <see cref="Resume"/>.</summary>
    public Task PauseAsync()
    {
        lock (gate)
        {
            pauses++;
            if (running == 0)
                return Task.CompletedTask;
            drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return drained.Task;
        }
    }

    public void Resume()
    {
        lock (gate)
        {
            if (pauses == 0)
                throw new InvalidOperationException("Resume without a pause.");
            pauses--;
            AdmitWaiters();
        }
    }

    /// <summary>Marks every matching task aborted; waiting ones are admitted so they complete at once.</summary>
    public int Abort(Func<ScsiTask, bool> match)
    {
        var n = 0;
        lock (gate)
        {
            for (var t = head; t is not null; t = t.SetNext)
            {
                if (t.Aborted || !match(t))
                    continue;
                t.Abort();
                n++;
                if (t.Waiting)
                {
                    t.Waiting = false;
                    waiting--;
                    t.Exclusive = false;
                    running++;
                    t.Admit();
                }
            }
        }
        return n;
    }

    /// <summary>Completes when no running task other than <paramref name="except"/> is left (new ones must be kept out by the caller).</summary>
    public Task WaitForOthersAsync(ScsiTask? except)
        => WhenAsync(() => running - (except is not null && !except.Waiting && Contains(except) ? 1 : 0) <= 0);

    private bool Contains(ScsiTask task)
    {
        for (var t = head; t is not null; t = t.SetNext)
            if (t == task)
                return true;
        return false;
    }

    /// <summary>Tasks currently in the set (for task management lookups).</summary>
    public ScsiTask? Find(Func<ScsiTask, bool> match)
    {
        lock (gate)
        {
            for (var t = head; t is not null; t = t.SetNext)
                if (match(t))
                    return t;
        }
        return null;
    }

    private bool CanStart(ScsiTask task)
    {
        if (pauses > 0 || exclusiveRunning)
            return false; // nothing, not even HEAD OF QUEUE, may break into an atomic or ORDERED command
        if (task.Attribute == TaskAttribute.HeadOfQueue)
            return true;
        return task.Exclusive ? running == 0 : running < MaxConcurrent;
    }

    private void Start(ScsiTask task)
    {
        running++;
        if (task.Exclusive)
            exclusiveRunning = true;
    }

    private void AdmitWaiters()
    {
        if (waiting == 0)
            return;
        for (var t = head; t is not null && waiting > 0; t = t.SetNext)
        {
            if (!t.Waiting)
                continue;
            if (!CanStart(t))
            {
                if (t.Attribute != TaskAttribute.HeadOfQueue)
                    break; // FIFO: nothing behind a blocked task may overtake it
                continue;
            }
            t.Waiting = false;
            waiting--;
            Start(t);
            t.Admit();
        }
    }

    private void Append(ScsiTask t)
    {
        t.SetPrev = tail;
        t.SetNext = null;
        if (tail is null) head = t; else tail.SetNext = t;
        tail = t;
    }

    private void Remove(ScsiTask t)
    {
        if (t.SetPrev is null) head = t.SetNext; else t.SetPrev.SetNext = t.SetNext;
        if (t.SetNext is null) tail = t.SetPrev; else t.SetNext.SetPrev = t.SetPrev;
        t.SetNext = t.SetPrev = null;
    }
}
