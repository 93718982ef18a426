namespace HandlerRuntime.Tests;

public sealed class CliSmokeTests
{
    [Fact]
    public async Task Status_without_a_daemon_says_so_plainly()
    {
        using var dir = new TempDir();
        var r = await ProcessRunner.RunAsync(RepoPaths.Hrt, "status", "--control", dir.File("none.sock"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("No hrt daemon is listening on", r.StdErr);
        Assert.Contains("hrt serve", r.StdErr);
    }
}
