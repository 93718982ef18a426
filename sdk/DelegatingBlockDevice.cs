namespace HandlerRuntime.Sdk;

/// <summary>
/// A device that wraps another (a filter, as nbdkit's <c>next_ops</c>): every member forwards
/// to <see cref="Inner"/> until overridden, optional features included, so that a wrapper
/// cannot drop a capability by forgetting it. Override what the filter changes; override
/// <see cref="GetFeature{T}"/> to hide a feature of the inner device that would bypass the
/// filter (a filter that transforms data must not pass on <see cref="IScsiCommandHandler"/>).
/// </summary>
public abstract class DelegatingBlockDevice(IBlockDevice inner) : IBlockDevice
{
    /// <summary>The wrapped device; disposed with this one.</summary>
    protected IBlockDevice Inner { get; } = inner;

    /// <inheritdoc />
    public virtual DeviceGeometry Geometry => Inner.Geometry;

    /// <inheritdoc />
    public virtual DeviceCapabilities Capabilities => Inner.Capabilities;

    /// <inheritdoc />
    public virtual ThreadModel ThreadModel => Inner.ThreadModel;

    /// <summary>The feature from this wrapper when it implements it, else the inner device's.</summary>
    public virtual T? GetFeature<T>() where T : class => this as T ?? Inner.GetFeature<T>();

    /// <inheritdoc />
    public virtual ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
        => Inner.ReadAsync(offset, destination, cancellationToken);

    /// <inheritdoc />
    public virtual ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
        => Inner.WriteAsync(offset, source, flags, cancellationToken);

    /// <inheritdoc />
    public virtual ValueTask FlushAsync(CancellationToken cancellationToken) => Inner.FlushAsync(cancellationToken);

    /// <inheritdoc />
    public virtual ValueTask UnmapAsync(long offset, long length, CancellationToken cancellationToken)
        => Inner.UnmapAsync(offset, length, cancellationToken);

    /// <inheritdoc />
    public virtual ValueTask WriteZeroesAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken)
        => Inner.WriteZeroesAsync(offset, length, flags, cancellationToken);

    /// <inheritdoc />
    public virtual ValueTask ResizeAsync(long newSize, CancellationToken cancellationToken) => Inner.ResizeAsync(newSize, cancellationToken);

    /// <inheritdoc />
    public virtual ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return Inner.DisposeAsync();
    }
}
