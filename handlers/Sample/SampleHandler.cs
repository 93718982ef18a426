using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Sample;

/// <summary>
/// <c>sample/&lt;fill byte&gt;</c>: a RAM disk whose blocks start filled with one byte value.
/// The smallest complete handler: validate the config, open, read, write.
/// </summary>
public sealed class SampleHandler : IHandler
{
    public string Subtype => "sample";

    public string ConfigHelp => "sample/<0-255>  A RAM disk (size required) whose blocks start filled with that byte.";

    public ConfigCheck CheckConfig(string config) =>
        byte.TryParse(config, out _) ? ConfigCheck.Valid : ConfigCheck.Invalid($"'{config}' is not a byte value from 0 to 255.");

    public ValueTask<IBlockDevice> OpenAsync(DeviceOpenContext context, CancellationToken cancellationToken)
    {
        if (CheckConfig(context.Config) is { IsValid: false } bad)
            throw new HandlerConfigException(bad.Reason!);
        if (context.RequestedSize <= 0 || context.RequestedSize > Array.MaxLength)
            throw new HandlerConfigException("sample needs a size between one block and 2 GiB.");
        var data = new byte[context.RequestedSize];
        Array.Fill(data, byte.Parse(context.Config));
        return ValueTask.FromResult<IBlockDevice>(new SampleDevice(data, context.RequestedBlockSize is 0 ? 512 : context.RequestedBlockSize));
    }

    private sealed class SampleDevice(byte[] data, int blockSize) : IBlockDevice
    {
        public DeviceGeometry Geometry { get; } = DeviceGeometry.FromSize(data.Length, blockSize);

        public DeviceCapabilities Capabilities => DeviceCapabilities.Write;

        // The default ThreadModel (SerializeRequests) means no locking is needed here.

        public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
        {
            data.AsSpan((int)offset, destination.Length).CopyTo(destination.Span);
            return default;
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
        {
            source.Span.CopyTo(data.AsSpan((int)offset));
            return default;
        }

        public ValueTask DisposeAsync() => default;
    }
}
