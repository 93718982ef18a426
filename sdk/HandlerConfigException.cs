namespace HandlerRuntime.Sdk;

/// <summary>
/// Thrown by <see cref="IHandler.OpenAsync"/> when the handler config, the requested
/// size or the requested block size cannot be honoured. The message is shown to the
/// user as is, so it should say what is wrong and what to do.
/// </summary>
public sealed class HandlerConfigException : Exception
{
    /// <summary>Creates the exception with a user-facing sentence.</summary>
    public HandlerConfigException(string message) : base(message) { }

    /// <summary>Creates the exception with a user-facing sentence and its cause.</summary>
    public HandlerConfigException(string message, Exception inner) : base(message, inner) { }
}
