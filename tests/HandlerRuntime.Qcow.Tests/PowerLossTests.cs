using System.Collections.Concurrent;
using HandlerRuntime.Handlers.Qcow;
using HandlerRuntime.Qcow.CrashDriver;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;

namespace HandlerRuntime.Qcow.Tests;

/// <summary>
/// Power-loss trials: the image lives in a storage that keeps only what was synced, and at a
/// random write the power goes; of the writes issued since the last sync, a random subset
/// survives (the page cache gives no order). A SIGKILL cannot test this: the kernel keeps
/// every completed write. qemu-img check must then find leaks at worst, and every
/// acknowledged write must be there.
/// </summary>
public sealed class PowerLossTests(ITestOutputHelper output)
{
    private const int TrialsPerImage = 20;
    private const int Steps = 120;
    private const int MaxWriteBytes = 64 << 10;

    [Fact]
    public async Task Losing_unsynced_writes_at_any_point_leaves_no_corruption_and_no_acknowledged_write_lost()
    {
        var results = new ConcurrentBag<(string Image, int Check)>();
        await Parallel.ForEachAsync(CrashImage.All, new ParallelOptions { MaxDegreeOfParallelism = 2 }, async (image, _) =>
        {
            using var dir = new TempDir("qcow-power");
            var path = await image.Build(dir.Path);
            var initial = await Qemu.ToRawAsync(path);
            var bytes = await File.ReadAllBytesAsync(path);
            var totalWrites = (await RunAsync(image, path, bytes, seed: 1, writesBeforeLoss: int.MaxValue)).Writes;
            for (var trial = 0; trial < TrialsPerImage; trial++)
            {
                var seed = 100 + trial;
                var random = new Random(seed);
                var name = $"{image.Name}, power-loss trial {trial}";
                var run = await RunAsync(image, path, bytes, seed, random.Next(1, totalWrites + 1));
                var crashed = Path.Combine(dir.Path, $"crashed-{trial}.qcow2");
                await File.WriteAllBytesAsync(crashed, run.Storage.SurvivingImage(random));
                results.Add((image.Name, await CrashVerifier.AssertNoCorruptionAsync(crashed, name)));
                var after = await Qemu.ToRawAsync(crashed, "qcow2");
                CrashVerifier.Verify(initial, after, new CrashWorkload(seed, initial.Length, MaxWriteBytes, image.Unmap), run.LastBegun, run.Acknowledged, name);
                File.Delete(crashed);
            }
        });
        foreach (var g in results.GroupBy(r => r.Image))
            output.WriteLine($"{g.Key}: {g.Count()} trials, qemu-img check exit codes {string.Join(",", g.Select(r => r.Check))}");
        Assert.Equal(CrashImage.All.Count * TrialsPerImage, results.Count);
    }

    private sealed record Run(PowerLossStorage Storage, int LastBegun, HashSet<int> Acknowledged, int Writes);

    private static async Task<Run> RunAsync(CrashImage image, string path, byte[] bytes, int seed, int writesBeforeLoss)
    {
        var storage = new PowerLossStorage(path, bytes, writesBeforeLoss);
        var opened = await ImageOpener.OpenOnStorageAsync(storage, writable: true, 64 << 10, NullLogger.Instance, null, [path], top: true);
        var device = new QcowDevice(opened, 512, NullLogger.Instance);
        var workload = new CrashWorkload(seed, device.Geometry.SizeBytes, MaxWriteBytes, image.Unmap);
        var acknowledged = new HashSet<int>();
        var lastBegun = -1;
        try
        {
            for (var i = 0; i < Steps; i++)
            {
                var step = workload.Next();
                lastBegun = step.Index;
                await CrashWorkload.ApplyAsync(device, step);
                if (step.DurableOnAck)
                    acknowledged.Add(step.Index);
            }
        }
        catch (PowerLostException)
        {
        }
        // The process is gone with the power: nothing more is written. Only the backing files are closed.
        if (opened is Qcow2Image { Backing: { } backing })
            await backing.DisposeAsync();
        return new Run(storage, lastBegun, acknowledged, storage.WritesIssued);
    }
}

internal sealed class PowerLostException() : Exception("power lost");

/// <summary>Image bytes in memory: what was synced, and the writes since, any subset of which a power loss keeps.</summary>
internal sealed class PowerLossStorage(string name, byte[] initial, int writesBeforeLoss) : ImageStorage
{
    private readonly List<(long Offset, byte[] Data)> pending = [];
    private byte[] current = (byte[])initial.Clone();
    private byte[] durable = (byte[])initial.Clone();
    private long currentLength = initial.Length;
    private long durableLength = initial.Length;
    private int writesLeft = writesBeforeLoss;
    private bool lost;

    public int WritesIssued { get; private set; }

    public override string Name => name;
    public override bool Writable => true;
    public override long Length => currentLength;

    public override ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        var inside = (int)Math.Clamp(currentLength - offset, 0, destination.Length);
        current.AsSpan((int)offset, inside).CopyTo(destination.Span);
        destination.Span[inside..].Clear();
        return default;
    }

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
    {
        if (lost || writesLeft-- <= 0)
        {
            lost = true;
            throw new PowerLostException();
        }
        WritesIssued++;
        Apply(ref current, ref currentLength, offset, source.Span);
        pending.Add((offset, source.ToArray()));
        return default;
    }

    public override void Sync()
    {
        if (lost)
            throw new PowerLostException();
        foreach (var (offset, data) in pending)
            Apply(ref durable, ref durableLength, offset, data);
        pending.Clear();
    }

    /// <summary>The synced bytes plus a random subset of the writes since the last sync.</summary>
    public byte[] SurvivingImage(Random random)
    {
        var image = (byte[])durable.Clone();
        var length = durableLength;
        foreach (var (offset, data) in pending)
            if (random.Next(2) == 0)
                Apply(ref image, ref length, offset, data);
        return image.AsSpan(0, (int)length).ToArray();
    }

    private static void Apply(ref byte[] target, ref long length, long offset, ReadOnlySpan<byte> data)
    {
        var end = offset + data.Length;
        if (end > target.Length)
            Array.Resize(ref target, (int)Math.Max(end, target.Length * 2L));
        data.CopyTo(target.AsSpan((int)offset));
        length = Math.Max(length, end);
    }

    public override void Dispose() { }
}
