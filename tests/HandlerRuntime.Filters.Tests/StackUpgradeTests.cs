using System.Text;

namespace HandlerRuntime.Filters.Tests;

/// <summary>
/// A stacked LUN, crypt/ over a file-backed cow/ over file//, survives a hot upgrade of each
/// plugin in its stack (a rebuilt folder copied over the deployed one) while a writer does
/// verified I/O, and what is stored below it is ciphertext.
/// </summary>
public sealed class StackUpgradeTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const int BlockSize = 512;
    private const int SizeBytes = 32 << 20;
    private const int Blocks = SizeBytes / BlockSize;
    private const uint MarkerLba = 2048;          // 64 KiB of plaintext text, looked for below the stack
    private const uint WriterFirstLba = 4096;     // the writer's blocks: 2 MiB up to 30 MiB
    private const uint WriterEndLba = 30 << 11;
    private const string QemuRegion = "30M 1M";   // written once by qemu-io, read back after each upgrade

    private static string Rebuilt(string plugin) => Path.Combine(AppContext.BaseDirectory, "rebuilt", plugin);

    [Fact]
    public async Task Crypt_over_cow_over_file_survives_a_hot_upgrade_of_each_plugin_under_verified_io()
    {
        using var dir = new TempDir("hrt-stack");
        var handlers = dir.File("handlers");
        CopyFolder(RepoPaths.Handlers, handlers);
        var basePath = dir.File("base.img");
        var overlayPath = dir.File("overlay.cow");
        Scsi.RandomFile(basePath, SizeBytes, seed: 11);
        var baseDigest = Scsi.Sha256(basePath);
        var cfgstring = $"crypt/@cow/file={overlayPath}@file/{basePath}";
        await using var d = await Scsi.StartAsync([Scsi.Lun("stack", cfgstring, null, 0)], handlerPath: handlers);
        await using var ini = await Scsi.LoginAsync(d, 0);

        var marker = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("PLAINTEXT-MARKER-HandlerRuntime-", 2048))); // 64 KiB
        await Scsi.WriteAndVerifyAsync(ini, 0, MarkerLba, marker, "the plaintext marker");
        await Daemons.QemuIoAsync(d.Url(), $"write -P 0xa5 {QemuRegion}", $"read -P 0xa5 {QemuRegion}");

        // The writer: random 4 KiB writes, each read back at once; a model of what the LUN must hold.
        var model = new byte[SizeBytes];
        var written = new bool[Blocks];
        var turn = new SemaphoreSlim(1, 1);
        var failures = new List<string>();
        var ios = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(3)); // bounded in time as well as by the test's end
        var writer = Task.Run(async () =>
        {
            var rng = new Random(21);
            for (var n = 0; n < 50_000 && !stop.IsCancellationRequested; n++)
            {
                await turn.WaitAsync();
                try
                {
                    var lba = (uint)rng.Next((int)WriterFirstLba, (int)WriterEndLba - 8);
                    var data = new byte[8 * BlockSize];
                    rng.NextBytes(data);
                    var w = await Scsi.WriteAsync(ini, 0, lba, data);
                    var r = await Scsi.ReadAsync(ini, 0, lba, 8);
                    if (w.Status != Scsi.Good || r.Status != Scsi.Good || !r.Data.AsSpan().SequenceEqual(data))
                        lock (failures) failures.Add($"lba {lba}: write {w.Describe()}, read {r.Describe()}, same data: {r.Data.AsSpan().SequenceEqual(data)}");
                    data.CopyTo(model, (int)lba * BlockSize);
                    Array.Fill(written, true, (int)lba, 8);
                    Interlocked.Increment(ref ios);
                }
                finally
                {
                    turn.Release();
                }
            }
        });

        async Task AwaitIoAsync(int more, string when)
        {
            var target = Volatile.Read(ref ios) + more;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            while (Volatile.Read(ref ios) < target)
            {
                Assert.False(writer.IsCompleted, $"the writer stopped {when}: {writer.Exception}");
                await Task.Delay(50, timeout.Token);
            }
        }

        async Task VerifyEverythingAsync(string when)
        {
            await turn.WaitAsync();
            try
            {
                for (uint lba = 0; lba < Blocks; lba += 512)
                {
                    var r = await Scsi.ReadAsync(ini, 0, lba, 512);
                    Assert.True(r.Status == Scsi.Good, $"{when}: READ at {lba} answered {r.Describe()}");
                    for (var b = 0; b < 512; b++)
                        if (written[lba + b])
                            Assert.True(r.Data.AsSpan(b * BlockSize, BlockSize).SequenceEqual(model.AsSpan((int)(lba + b) * BlockSize, BlockSize)),
                                $"{when}: block {lba + b} differs from what was last written to it");
                }
                var m = await Scsi.ReadAsync(ini, 0, MarkerLba, (ushort)(marker.Length / BlockSize));
                Assert.True(m.Data.AsSpan().SequenceEqual(marker), $"{when}: the marker changed");
            }
            finally
            {
                turn.Release();
            }
            await Daemons.QemuIoAsync(d.Url(), $"read -P 0xa5 {QemuRegion}");
        }

        await AwaitIoAsync(100, "before the upgrades");
        foreach (var plugin in new[] { "Crypt", "Cow", "File" })
        {
            var before = Volatile.Read(ref ios);
            CopyFolder(Rebuilt(plugin), Path.Combine(handlers, plugin));
            await d.WaitForOutputAsync(o => o.Contains($"Handler plugin {plugin} upgraded to 2.0.0"), TimeSpan.FromSeconds(60), $"the upgrade of {plugin}");
            await AwaitIoAsync(100, $"after the upgrade of {plugin}");
            await VerifyEverythingAsync($"after the upgrade of {plugin}");
            Assert.True(Volatile.Read(ref ios) > before + 100, $"I/O did not continue across the upgrade of {plugin}");
        }
        stop.Cancel();
        await writer;
        Assert.True(failures.Count == 0, $"{failures.Count} of {ios} verified writes failed: " + string.Join("; ", failures.Take(5)));
        Assert.DoesNotContain("rolled back", d.Output);
        // Each upgrade reopened the whole stack: cow/ opened its file overlay four times, finding what the last one wrote.
        var opens = d.Output.Split('\n').Where(l => l.Contains("cow: overlay") && l.Contains(overlayPath)).ToList();
        Assert.True(opens.Count == 4, $"cow/ opened {opens.Count} times:\n{string.Join('\n', opens)}");
        output.WriteLine($"{ios} verified 4 KiB writes across the upgrades of Crypt, Cow and File; cow/ opens:\n{string.Join('\n', opens)}");

        // Below the stack: the base untouched, the overlay holds the writes, as ciphertext. (The
        // daemon stopped first: cow/ holds its overlay under an exclusive lock while it runs.)
        var sync = await ini.CommandAsync(Cdbs.SyncCache10());
        Assert.True(sync.Status == Scsi.Good, sync.Describe());
        await d.StopAsync();
        Assert.Equal(baseDigest, Scsi.Sha256(basePath));
        var overlay = await File.ReadAllBytesAsync(overlayPath);
        Assert.True(overlay.Length >= marker.Length, $"the overlay holds only {overlay.Length} bytes");
        foreach (var file in new[] { overlay, await File.ReadAllBytesAsync(basePath) })
        {
            Assert.True(file.AsSpan().IndexOf(marker.AsSpan(0, 32)) < 0, "the plaintext marker is stored in the clear");
            Assert.True(file.AsSpan().IndexOf(Enumerable.Repeat((byte)0xa5, 512).ToArray()) < 0, "qemu-io's 0xa5 pattern is stored in the clear");
        }
    }

    private static void CopyFolder(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var dest = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(dest)!);
            File.Copy(file, dest, overwrite: true);
        }
    }
}
