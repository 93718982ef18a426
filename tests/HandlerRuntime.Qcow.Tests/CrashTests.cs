using System.Collections.Concurrent;
using System.Diagnostics;
using HandlerRuntime.Qcow.CrashDriver;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace HandlerRuntime.Qcow.Tests;

/// <summary>
/// Crash trials with a real process: the crash driver writes through the handler and is
/// killed with SIGKILL at a random moment; qemu-img check must find no corruption and
/// every acknowledged write must be there.
/// </summary>
public sealed class CrashTests(ITestOutputHelper output)
{
    private const int TrialsPerImage = 8;
    private const int MaxWriteBytes = 96 << 10;

    private static string DriverDll => Path.Combine(RepoPaths.Root, "tests", "HandlerRuntime.Qcow.CrashDriver", "bin", RepoPaths.Configuration, "net10.0", "HandlerRuntime.Qcow.CrashDriver.dll");

    [Fact]
    public async Task Sigkill_at_random_points_leaves_no_corruption_and_loses_no_acknowledged_write()
    {
        Assert.True(File.Exists(DriverDll), $"the crash driver is not built at {DriverDll}");
        var results = new ConcurrentBag<(string Image, int Check, int Steps, int Acks)>();
        var trials = new List<(CrashImage Image, int Trial)>();
        foreach (var image in CrashImage.All)
            for (var t = 0; t < TrialsPerImage; t++)
                trials.Add((image, t));
        var templates = new ConcurrentDictionary<string, Task<(TempDir Dir, string Image, byte[] Initial)>>();
        try
        {
            await Parallel.ForEachAsync(trials, new ParallelOptions { MaxDegreeOfParallelism = 3 }, async (trial, _) =>
            {
                var template = await templates.GetOrAdd(trial.Image.Name, _ => BuildTemplateAsync(trial.Image));
                results.Add(await RunTrialAsync(trial.Image, trial.Trial, template.Dir.Path, template.Image, template.Initial));
            });
        }
        finally
        {
            foreach (var t in templates.Values)
                if (t.IsCompletedSuccessfully)
                    (await t).Dir.Dispose();
        }
        foreach (var g in results.GroupBy(r => r.Image))
            output.WriteLine($"{g.Key}: {g.Count()} trials, qemu-img check exit codes {string.Join(",", g.Select(r => r.Check))}, steps begun {string.Join(",", g.Select(r => r.Steps))}, acknowledged {g.Sum(r => r.Acks)}");
        Assert.Equal(trials.Count, results.Count);
        // The kills must land mid-workload, not before it started: most trials acknowledged something.
        Assert.True(results.Count(r => r.Acks > 0) >= trials.Count / 2, "too few trials got as far as an acknowledged flush");
    }

    private static async Task<(TempDir, string, byte[])> BuildTemplateAsync(CrashImage image)
    {
        var dir = new TempDir("qcow-crash-template");
        var path = await image.Build(dir.Path);
        return (dir, path, await Qemu.ToRawAsync(path));
    }

    private static async Task<(string, int, int, int)> RunTrialAsync(CrashImage image, int trial, string templateDir, string templateImage, byte[] initial)
    {
        using var dir = new TempDir("qcow-crash");
        foreach (var f in Directory.GetFiles(templateDir))
            File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        var path = Path.Combine(dir.Path, Path.GetFileName(templateImage));
        var seed = image.Name.Length * 1000 + trial;
        var name = $"{image.Name}, trial {trial} (seed {seed})";

        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { DriverDll, path, seed.ToString(), MaxWriteBytes.ToString(), image.Unmap ? "1" : "0", "cache=64K" })
            psi.ArgumentList.Add(a);
        var lastBegun = -1;
        var acknowledged = new HashSet<int>();
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var errors = new System.Text.StringBuilder();
        using var process = Process.Start(psi)!;
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
                return;
            lock (acknowledged)
            {
                if (e.Data == "READY")
                    ready.TrySetResult();
                else if (e.Data.StartsWith("BEGIN ", StringComparison.Ordinal))
                    lastBegun = int.Parse(e.Data[6..]);
                else if (e.Data.StartsWith("ACK ", StringComparison.Ordinal))
                    acknowledged.Add(int.Parse(e.Data[4..]));
            }
        };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (errors) errors.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var started = await Task.WhenAny(ready.Task, process.WaitForExitAsync(), Task.Delay(TimeSpan.FromSeconds(60)));
        if (!ready.Task.IsCompleted)
        {
            process.Kill();
            throw new XunitException($"{name}: the crash driver did not start: {errors}");
        }
        await Task.Delay(new Random(seed).Next(20, 900));
        if (process.HasExited)
            throw new XunitException($"{name}: the crash driver stopped by itself with exit code {process.ExitCode}: {errors}");
        process.Kill(); // SIGKILL
        await process.WaitForExitAsync();

        var check = await CrashVerifier.AssertNoCorruptionAsync(path, name);
        var after = await Qemu.ToRawAsync(path);
        lock (acknowledged)
        {
            var workload = new CrashWorkload(seed, initial.Length, MaxWriteBytes, image.Unmap);
            CrashVerifier.Verify(initial, after, workload, lastBegun, acknowledged, name);
            return (image.Name, check, lastBegun + 1, acknowledged.Count);
        }
    }
}
