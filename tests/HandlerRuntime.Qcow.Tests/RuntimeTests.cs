namespace HandlerRuntime.Qcow.Tests;

/// <summary>The handler as users meet it: the bundled plugin in a real `hrt serve`, driven by the CLI.</summary>
public sealed class RuntimeTests
{
    [Fact]
    public async Task Hrt_lun_create_serves_a_qcow2_image_at_its_virtual_size_and_refuses_another_size()
    {
        using var dir = new TempDir("qcow-runtime");
        var image = dir.File("vm.qcow2");
        await Qemu.ImgOkAsync("create", "-q", "-f", "qcow2", image, "48M");
        await using var daemon = await HrtDaemon.StartAsync();

        var handlers = await daemon.CliOkAsync("handlers");
        Assert.Contains("qcow", handlers);

        var wrong = await daemon.CliAsync("lun", "create", "bad", "qcow/" + image, "--size", "64M");
        Assert.NotEqual(0, wrong.ExitCode);
        Assert.Contains($"{image} has a virtual size of 50331648 bytes, not the requested 67108864", wrong.StdErr);

        var created = await daemon.CliOkAsync("lun", "create", "q", "qcow/" + image + "?cache=1M");
        Assert.Contains("48M", created);
        var list = await daemon.CliOkAsync("lun", "list", "--json");
        Assert.Contains("\"q\"", list);
        Assert.Contains("50331648", list);

        var badConfig = await daemon.CliAsync("check-config", "qcow/" + image + "?cache=1K");
        Assert.NotEqual(0, badConfig.ExitCode);
        Assert.Contains("is not a size from 64K to 1G", badConfig.Output);
    }
}
