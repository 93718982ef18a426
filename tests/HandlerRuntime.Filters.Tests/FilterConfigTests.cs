using HandlerRuntime.Handlers.Cow;
using HandlerRuntime.Handlers.Crypt;
using HandlerRuntime.Handlers.Delay;
using HandlerRuntime.Handlers.Error;
using HandlerRuntime.Handlers.Ram;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Filters.Tests;

/// <summary>Each filter's CheckConfig: good configs pass, bad ones are refused with a sentence that names what is wrong, without opening anything.</summary>
public sealed class FilterConfigTests
{
    [Theory]
    [InlineData("error", "@file//var/lib/hrt/a.img")]
    [InlineData("error", "errno=ENOSPC,rate=5%,ops=write+flush,range=1M-2M,file=/run/fail,delay-ms=100,seed=9@file//a.img")]
    [InlineData("error", "errno=bug,short=1,ops=read@ram/@")]
    [InlineData("error", "rate=0.25@zbc/model-HM@/var/local/z.raw")]
    [InlineData("delay", "ms=10@file//a.img")]
    [InlineData("delay", "read-ms=5,write-ms=20,flush-ms=0@ram/@")]
    [InlineData("cow", "@file//images/base.img")]
    [InlineData("cow", "file=/var/lib/hrt/vm.cow,granularity=4K@file//images/base.img")]
    [InlineData("crypt", "@cow/@file//images/base.img")]
    public void Valid_configs_pass(string filter, string config)
        => Assert.True(Handler(filter).CheckConfig(config).IsValid, Handler(filter).CheckConfig(config).Reason);

    [Theory]
    [InlineData("error", "file//a.img", "write error/[options]@<cfgstring")]
    [InlineData("error", "@/a.img", "is not a cfgstring")]
    [InlineData("error", "errno=EWHAT@file//a.img", "errno 'EWHAT' is not one it knows")]
    [InlineData("error", "rate=2@file//a.img", "rate '2' is not a share")]
    [InlineData("error", "rate=150%@file//a.img", "rate '150%' is not a share")]
    [InlineData("error", "ops=read+reed@file//a.img", "names 'reed', which is no operation")]
    [InlineData("error", "range=2M-1M@file//a.img", "range '2M-1M' is not <start>-<end>")]
    [InlineData("error", "file=relative/path@file//a.img", "file 'relative/path' is not an absolute path")]
    [InlineData("error", "delay-ms=soon@file//a.img", "delay-ms 'soon' is not a whole number")]
    [InlineData("error", "short=1,ops=write@file//a.img", "short=1 shortens failed reads")]
    [InlineData("error", "colour=red@file//a.img", "unknown option 'colour'")]
    [InlineData("delay", "@file//a.img", "no delay is given")]
    [InlineData("delay", "read-ms=-1@file//a.img", "read-ms '-1' is not a whole number")]
    [InlineData("cow", "granularity=3000@file//a.img", "granularity '3000' is not a power of two")]
    [InlineData("cow", "granularity=8M@file//a.img", "granularity '8M' is not a power of two")]
    [InlineData("cow", "file=ov.cow@file//a.img", "file 'ov.cow' is not an absolute path")]
    [InlineData("crypt", "key=x@file//a.img", "unknown option 'key'; it takes no options")]
    [InlineData("crypt", "file//a.img", "write crypt/[options]@<cfgstring")]
    public void Bad_configs_are_refused_with_a_sentence(string filter, string config, string expected)
    {
        var check = Handler(filter).CheckConfig(config);
        Assert.False(check.IsValid);
        Assert.Contains(expected, check.Reason);
        Assert.StartsWith(filter, check.Reason);
        Assert.EndsWith(".", check.Reason);
    }

    private static IHandler Handler(string filter) => filter switch
    {
        "error" => new ErrorHandler(),
        "delay" => new DelayHandler(),
        "cow" => new CowHandler(),
        "crypt" => new CryptHandler(),
        _ => throw new ArgumentException(filter),
    };

    private static async Task<IBlockDevice> RamAsync(long size)
        => await new RamHandler().OpenAsync(OpenContexts.For("@", size, 512), CancellationToken.None);

    [Fact]
    public async Task Error_short_reads_return_the_first_half_then_fail_and_ranges_limit_the_faults()
    {
        var ram = await RamAsync(1 << 20);
        var pattern = new byte[8192];
        new Random(5).NextBytes(pattern);
        await ram.WriteAsync(0, pattern, WriteFlags.None, default);
        var options = ErrorOptions.Parse("short=1,ops=read,range=4096-8192@ram/@", out var error) ?? throw new Exception(error);
        await using var device = new ErrorDevice(ram, options);

        var buffer = new byte[8192];
        var e = await Assert.ThrowsAsync<DeviceIOException>(async () => await device.ReadAsync(0, buffer, default));
        Assert.Equal(Errnos.EIO, e.Errno);
        Assert.True(buffer.AsSpan(0, 4096).SequenceEqual(pattern.AsSpan(0, 4096)), "the first half was read before the failure");
        Assert.True(buffer.AsSpan(4096).IndexOfAnyExcept((byte)0) < 0, "nothing after the first half");

        // Outside the range nothing fails; writes are not chosen.
        var before = new byte[4096];
        await device.ReadAsync(0, before, default);
        Assert.True(before.AsSpan().SequenceEqual(pattern.AsSpan(0, 4096)));
        await device.WriteAsync(4096, new byte[4096], WriteFlags.None, default);
        Assert.Equal(1, device.Injected);
    }

    [Fact]
    public async Task Error_rate_is_repeatable_with_a_seed_and_thread_safe()
    {
        async Task<long> FailuresAsync(string config, int parallel)
        {
            var options = ErrorOptions.Parse(config, out var error) ?? throw new Exception(error);
            await using var device = new ErrorDevice(await RamAsync(1 << 20), options);
            await Parallel.ForAsync(0, 2000, new ParallelOptions { MaxDegreeOfParallelism = parallel }, async (i, ct) =>
            {
                try
                {
                    await device.ReadAsync(512L * (i % 2048), new byte[512], ct);
                }
                catch (DeviceIOException)
                {
                }
            });
            return device.Injected;
        }

        var one = await FailuresAsync("rate=30%,seed=42,ops=read@ram/@", 1);
        Assert.InRange(one, 500, 700); // 2000 × 0.3 = 600
        Assert.Equal(one, await FailuresAsync("rate=30%,seed=42,ops=read@ram/@", 4)); // the same count with four threads
        Assert.NotEqual(one, await FailuresAsync("rate=30%,seed=43,ops=read@ram/@", 1));
        Assert.Equal(0, await FailuresAsync("rate=0,ops=read@ram/@", 2));
        Assert.Equal(2000, await FailuresAsync("ops=read@ram/@", 2));
    }
}
