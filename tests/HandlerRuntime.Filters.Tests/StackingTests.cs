namespace HandlerRuntime.Filters.Tests;

/// <summary>Nested devices through the filters: a stack owns its base, read-only reaches the bottom, and the CLI checks filter configs.</summary>
public sealed class StackingTests
{
    [Fact]
    public async Task A_second_lun_on_the_base_of_a_cow_lun_is_refused_with_a_sentence()
    {
        using var dir = new TempDir("hrt-claim");
        var basePath = dir.File("base.img");
        Scsi.RandomFile(basePath, 8 << 20, 3);
        await using var d = await Scsi.StartAsync([Scsi.Lun("vm", "cow/@file/" + basePath, null, 0)]);

        var direct = await d.CliAsync("lun", "create", "thief", "file/" + basePath);
        Assert.NotEqual(0, direct.ExitCode);
        Assert.Contains($"file/{basePath} is the base of LUN vm", direct.StdErr);
        var stacked = await d.CliAsync("lun", "create", "thief2", $"error/@file/{basePath}");
        Assert.NotEqual(0, stacked.ExitCode);
        Assert.Contains("is in use by LUN vm", stacked.StdErr);

        // Once the cow/ LUN is gone, its base is free again.
        await d.CliOkAsync("lun", "delete", "vm");
        await d.CliOkAsync("lun", "create", "owner", "file/" + basePath);
    }

    [Fact]
    public async Task A_read_only_crypt_lun_opens_its_inner_device_read_only_and_filter_configs_are_checked_by_the_cli()
    {
        using var dir = new TempDir("hrt-ro");
        var inner = dir.File("ro.img");
        using (var f = File.Create(inner))
            f.SetLength(8 << 20);
        await using var d = await Scsi.StartAsync([]);
        await d.CliOkAsync("lun", "create", "ro", "crypt/@file/" + inner, "--read-only");

        // The daemon's descriptor of the inner file was opened O_RDONLY.
        var fds = Directory.EnumerateFileSystemEntries($"/proc/{d.ProcessId}/fd")
            .Where(fd => new FileInfo(fd).LinkTarget == inner).ToList();
        Assert.True(fds.Count == 1, $"expected one descriptor of {inner}, found {fds.Count}");
        var flags = File.ReadAllLines($"/proc/{d.ProcessId}/fdinfo/{Path.GetFileName(fds[0])}").Single(l => l.StartsWith("flags:"));
        Assert.True((Convert.ToInt32(flags.Split(':')[1].Trim(), 8) & 3) == 0, $"the inner file is not open read-only: {flags}");

        await using var ini = await Scsi.LoginAsync(d, 0);
        var w = await Scsi.WriteAsync(ini, 0, 0, new byte[512]);
        Assert.Equal("DATA PROTECT 27h/00h", w.Describe());
        Assert.Equal(Scsi.Good, (await Scsi.ReadAsync(ini, 0, 0, 8)).Status);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(d.StateDirectory, "luns", "ro", "xts-key")));

        var bad = await d.CliAsync("check-config", "cow/granularity=3K@file//var/lib/hrt/x.img");
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("granularity '3K' is not a power of two", bad.Output); // the verdict on stdout, exit 1
        await d.CliOkAsync("check-config", "crypt/@cow/file=/var/lib/hrt/x.cow@error/errno=EIO,rate=1%@file//var/lib/hrt/x.img");
        var handlers = await d.CliOkAsync("handlers");
        foreach (var subtype in new[] { "error/", "delay/", "cow/", "crypt/" })
            Assert.Contains(subtype, handlers);
    }
}
