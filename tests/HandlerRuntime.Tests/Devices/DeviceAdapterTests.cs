using HandlerRuntime.Devices;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Devices;

/// <summary>
/// The device adapter's emulation and fallbacks, against a RAM device that declares what a
/// test chooses and records the calls it gets; and the errno-to-sense table.
/// </summary>
public sealed class DeviceAdapterTests
{
    private sealed class RecordingDevice(DeviceCapabilities caps, bool zeroesUnsupportedHere = false, bool unmapUnsupportedHere = false) : IBlockDevice
    {
        public readonly byte[] Data = Enumerable.Repeat((byte)0xEE, 1 << 20).ToArray();
        public readonly List<string> Calls = [];
        public DeviceGeometry Geometry { get; } = DeviceGeometry.FromSize(1 << 20, 512);
        public DeviceCapabilities Capabilities => caps;

        public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
        {
            Data.AsSpan((int)offset, destination.Length).CopyTo(destination.Span);
            return default;
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, WriteFlags flags, CancellationToken cancellationToken)
        {
            Calls.Add($"write {offset}+{source.Length}{((flags & WriteFlags.Fua) != 0 ? " fua" : "")}");
            source.Span.CopyTo(Data.AsSpan((int)offset));
            return default;
        }

        public ValueTask FlushAsync(CancellationToken cancellationToken)
        {
            Calls.Add("flush");
            return default;
        }

        public ValueTask UnmapAsync(long offset, long length, CancellationToken cancellationToken)
        {
            if (unmapUnsupportedHere)
                throw new NotSupportedException("not on this filesystem");
            Calls.Add($"unmap {offset}+{length}");
            Data.AsSpan((int)offset, (int)length).Clear();
            return default;
        }

        public ValueTask WriteZeroesAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken)
        {
            if (zeroesUnsupportedHere)
                throw new NotSupportedException("not on this filesystem");
            Calls.Add($"zero {offset}+{length}");
            Data.AsSpan((int)offset, (int)length).Clear();
            return default;
        }

        public ValueTask DisposeAsync() => default;
    }

    private const DeviceCapabilities Cached = DeviceCapabilities.Write | DeviceCapabilities.Flush;

    [Fact]
    public async Task Fua_is_passed_on_natively_emulated_by_write_then_flush_or_dropped_without_a_volatile_cache()
    {
        var native = new RecordingDevice(Cached | DeviceCapabilities.Fua);
        await new DeviceAdapter(native).WriteAsync(512, new byte[512], WriteFlags.Fua, default);
        Assert.Equal(["write 512+512 fua"], native.Calls);

        var emulated = new RecordingDevice(Cached);
        await new DeviceAdapter(emulated).WriteAsync(512, new byte[512], WriteFlags.Fua, default);
        Assert.Equal(["write 512+512", "flush"], emulated.Calls);

        var uncached = new RecordingDevice(DeviceCapabilities.Write);
        var adapter = new DeviceAdapter(uncached);
        await adapter.WriteAsync(512, new byte[512], WriteFlags.Fua, default);
        await adapter.FlushAsync(default);
        Assert.Equal(["write 512+512"], uncached.Calls); // nothing volatile: no flush is ever called
    }

    [Fact]
    public async Task Write_zeroes_uses_the_device_then_falls_back_to_zero_buffers_when_it_lacks_it_or_says_not_here()
    {
        foreach (var device in new[] { new RecordingDevice(Cached), new RecordingDevice(Cached | DeviceCapabilities.WriteZeroes, zeroesUnsupportedHere: true) })
        {
            var adapter = new DeviceAdapter(device);
            Assert.True(adapter.Capabilities.HasFlag(DeviceCapabilities.WriteZeroes)); // offered to parents either way
            await adapter.WriteZeroesAsync(4096, 3 << 20 >> 2, ZeroFlags.Fua, default);
            Assert.True(device.Data.AsSpan(4096, 3 << 20 >> 2).IndexOfAnyExcept((byte)0) < 0);
            Assert.Equal((byte)0xEE, device.Data[4095]);
            Assert.Equal("flush", device.Calls[^1]); // FUA: durable when done
            Assert.DoesNotContain(device.Calls, c => c.StartsWith("zero"));
        }

        var native = new RecordingDevice(Cached | DeviceCapabilities.WriteZeroes);
        await new DeviceAdapter(native).WriteZeroesAsync(0, 8192, ZeroFlags.None, default);
        Assert.Equal(["zero 0+8192"], native.Calls);
    }

    [Fact]
    public async Task Unmap_is_advisory_unless_the_device_promised_zeros_then_an_unsupported_unmap_writes_them()
    {
        var none = new RecordingDevice(Cached);
        await new DeviceAdapter(none).UnmapAsync(0, 4096, default);
        Assert.Empty(none.Calls);

        var promised = new RecordingDevice(Cached | DeviceCapabilities.Unmap | DeviceCapabilities.UnmapReadsZeroes, unmapUnsupportedHere: true);
        await new DeviceAdapter(promised).UnmapAsync(0, 4096, default);
        Assert.True(promised.Data.AsSpan(0, 4096).IndexOfAnyExcept((byte)0) < 0);

        var unpromised = new RecordingDevice(Cached | DeviceCapabilities.Unmap, unmapUnsupportedHere: true);
        await new DeviceAdapter(unpromised).UnmapAsync(0, 4096, default);
        Assert.Equal((byte)0xEE, unpromised.Data[0]); // nothing promised, nothing done
    }

    [Fact]
    public async Task A_write_to_a_device_opened_read_only_is_write_protected_not_a_crash()
    {
        var e = await Assert.ThrowsAsync<ScsiException>(async () => await new DeviceAdapter(new RecordingDevice(DeviceCapabilities.Flush)).WriteAsync(0, new byte[512], WriteFlags.None, default));
        Assert.Equal(Sense.WriteProtected, e.Sense);
    }

    [Fact]
    public async Task Write_pattern_repeats_one_block_over_the_range()
    {
        var device = new RecordingDevice(Cached);
        var block = Enumerable.Range(0, 512).Select(i => (byte)i).ToArray();
        await new DeviceAdapter(device).WritePatternAsync(512, 3 << 20 >> 2, block, durable: false, default);
        for (var at = 512; at < 512 + (3 << 20 >> 2); at += 512)
            Assert.True(device.Data.AsSpan(at, 512).SequenceEqual(block));
        Assert.DoesNotContain("flush", device.Calls);
    }

    public static TheoryData<int, bool, SenseKey, byte, byte> ErrnoMeanings => new()
    {
        { Errnos.EIO, false, SenseKey.MediumError, 0x11, 0x00 },
        { Errnos.EIO, true, SenseKey.MediumError, 0x0C, 0x00 },
        { Errnos.EBADMSG, false, SenseKey.MediumError, 0x11, 0x00 },
        { Errnos.ENOSPC, true, SenseKey.DataProtect, 0x27, 0x07 },
        { Errnos.EDQUOT, true, SenseKey.DataProtect, 0x27, 0x07 },
        { Errnos.EROFS, true, SenseKey.DataProtect, 0x27, 0x00 },
        { Errnos.ENOTCONN, false, SenseKey.NotReady, 0x04, 0x00 },
        { Errnos.ENXIO, true, SenseKey.NotReady, 0x04, 0x00 },
        { Errnos.ECONNRESET, true, SenseKey.NotReady, 0x04, 0x00 },
        { Errnos.ETIMEDOUT, false, SenseKey.AbortedCommand, 0x08, 0x01 },
    };

    [Theory]
    [MemberData(nameof(ErrnoMeanings))]
    public void A_stores_errno_means_what_it_means_on_arrays(int errno, bool writes, SenseKey key, byte asc, byte ascq)
    {
        var mapped = DeviceErrors.ToScsi(new DeviceIOException(errno, "test"), writes)!;
        Assert.Equal(ScsiStatus.CheckCondition, mapped.Status);
        Assert.Equal((key, asc, ascq), (mapped.Sense.Key, mapped.Sense.Asc, mapped.Sense.Ascq));
    }

    [Fact]
    public void Transient_errors_are_busy_and_bugs_stay_bugs()
    {
        Assert.Equal(ScsiStatus.Busy, DeviceErrors.ToScsi(new DeviceIOException(Errnos.ENOMEM, "test"), writes: true)!.Status);
        Assert.Equal(ScsiStatus.Busy, DeviceErrors.ToScsi(new DeviceIOException(Errnos.EAGAIN, "test"), writes: false)!.Status);
        Assert.Null(DeviceErrors.ToScsi(new DeviceIOException(Errnos.EINVAL, "test"), writes: false));
        Assert.Null(DeviceErrors.ToScsi(new InvalidOperationException("a bug"), writes: false));
        Assert.Null(DeviceErrors.ToScsi(new NullReferenceException(), writes: true));
        // .NET's own IOExceptions carry the errno as HResult on Linux.
        Assert.Equal(SenseKey.DataProtect, DeviceErrors.ToScsi(new IOException("disk full", Errnos.ENOSPC), writes: true)!.Sense.Key);
        Assert.Equal(SenseKey.AbortedCommand, DeviceErrors.ToScsi(new TimeoutException(), writes: false)!.Sense.Key);
    }
}
