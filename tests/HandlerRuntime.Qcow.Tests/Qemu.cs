using Xunit.Sdk;

namespace HandlerRuntime.Qcow.Tests;

/// <summary>QEMU's tools, the oracle: qemu-img and qemu-io from Debian's qemu-utils.</summary>
internal static class Qemu
{
    private static readonly Lazy<string> ImgPath = new(() => ProcessRunner.Require("qemu-img"));

    public static Task<ProcessResult> ImgAsync(params string[] args) => ProcessRunner.RunAsync(ImgPath.Value, args, TimeSpan.FromMinutes(2));

    /// <summary>Runs qemu-img and fails the test with its output unless it exits 0.</summary>
    public static async Task<string> ImgOkAsync(params string[] args)
    {
        var r = await ImgAsync(args);
        if (r.ExitCode != 0)
            throw new XunitException($"qemu-img {string.Join(' ', args)} failed: {r}");
        return r.Output;
    }

    /// <summary>Runs qemu-io commands on an image (opened read-write, format given) and fails on any error it prints.</summary>
    public static Task IoAsync(string image, string format, params string[] commands) => Tools.QemuIoAsync(["-f", format], image, commands);

    /// <summary>What QEMU reads from the image: qemu-img convert -O raw.</summary>
    public static async Task<byte[]> ToRawAsync(string image, string? format = null)
    {
        var raw = image + ".oracle.raw";
        var args = new List<string> { "convert" };
        if (format is not null)
            args.AddRange(["-f", format]);
        args.AddRange(["-O", "raw", image, raw]);
        await ImgOkAsync([.. args]);
        try
        {
            return await File.ReadAllBytesAsync(raw);
        }
        finally
        {
            File.Delete(raw);
        }
    }

    /// <summary>qemu-img check: 0 consistent, 2 corrupt, 3 leaks only.</summary>
    public static Task<ProcessResult> CheckAsync(string image) => ImgAsync("check", "-f", "qcow2", image);

    public static async Task AssertCheckCleanAsync(string image)
    {
        var r = await CheckAsync(image);
        if (r.ExitCode != 0)
            throw new XunitException($"qemu-img check {image} reports problems: {r}");
    }

    /// <summary>qemu-img compare of the image against a raw file with the expected content.</summary>
    public static async Task AssertSameAsRawAsync(string image, byte[] expected, string format = "qcow2")
    {
        var raw = image + ".expected.raw";
        await File.WriteAllBytesAsync(raw, expected);
        try
        {
            var r = await ImgAsync("compare", "-f", format, "-F", "raw", image, raw);
            if (r.ExitCode != 0)
                throw new XunitException($"qemu-img compare {image} with the expected content: {r}");
        }
        finally
        {
            File.Delete(raw);
        }
    }
}
