namespace HandlerRuntime.Sdk;

/// <summary>How much concurrency a device accepts; the runtime enforces it.</summary>
public enum ThreadModel
{
    /// <summary>One operation at a time per device.</summary>
    SerializeRequests,
    /// <summary>Any number of operations at once, from any thread.</summary>
    Parallel,
}
