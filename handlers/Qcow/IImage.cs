namespace HandlerRuntime.Handlers.Qcow;

/// <summary>A readable disk image: the image served, or one link of its backing chain.</summary>
internal interface IImage : IAsyncDisposable
{
    string Path { get; }

    long VirtualSize { get; }

    /// <summary>Reads guest bytes; anything past <see cref="VirtualSize"/> reads as zeros.</summary>
    ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken);
}

/// <summary>A raw file used as a backing image.</summary>
internal sealed class RawImage(ImageStorage file) : IImage
{
    public string Path => file.Name;

    public long VirtualSize { get; } = file.Length;

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var inside = (int)Math.Clamp(VirtualSize - offset, 0, destination.Length);
        if (inside > 0)
            await file.ReadAsync(offset, destination[..inside], cancellationToken);
        destination.Span[inside..].Clear();
    }

    public ValueTask DisposeAsync()
    {
        file.Dispose();
        return default;
    }
}
