namespace HandlerRuntime.Iscsi.Tests;

/// <summary>Log level 5 (debug_scsi_cmd) shows every CDB and its outcome; lower levels do not.</summary>
public sealed class ScsiCommandLogTests
{
    [Fact]
    public async Task Level_5_logs_each_cdb_with_its_outcome_and_level_3_does_not()
    {
        await using var d = await Daemons.StartRamAsync("16M");
        await Daemons.RunOkAsync("iscsi-inq", [d.Url()]);
        Assert.DoesNotContain("(INQUIRY) ->", d.Output);

        await d.CliOkAsync("log-level", "debug_scsi_cmd");
        await Daemons.RunOkAsync("iscsi-inq", [d.Url()]);
        await Daemons.RunAsync("iscsi-readcapacity16", [d.Url()]);
        await d.WaitForOutputAsync(o => o.Contains("CDB 12000000") && o.Contains("(INQUIRY) -> Good"), TimeSpan.FromSeconds(10), "an INQUIRY line");
        await d.WaitForOutputAsync(o => o.Contains("(READ CAPACITY(16)) -> Good data-in 32"), TimeSpan.FromSeconds(10), "a READ CAPACITY(16) line");
        Assert.Contains("CHECK CONDITION UnitAttention 29h/00h", d.Output); // each new session's first command, with its sense

        await d.CliOkAsync("log-level", "info");
        var before = d.Output.Length;
        await Daemons.RunOkAsync("iscsi-inq", [d.Url()]);
        await Task.Delay(300);
        Assert.DoesNotContain("(INQUIRY) ->", d.Output[before..]);
    }
}
