namespace HandlerRuntime.Iscsi.Tests;

/// <summary>
/// libiscsi's iSCSI protocol suite (iscsi-test-cu --test=iSCSI): every test must run and
/// pass. CUnit counts a test that printed [SKIPPED] as passed; here a skip is a failure
/// (verdicts read by <see cref="CunitResults"/>).
/// </summary>
public sealed class ComplianceTests
{
    [Fact]
    public async Task Libiscsi_iscsi_suite_runs_every_test_and_passes()
    {
        await using var d = await Daemons.StartRamAsync("128M");
        var r = await Daemons.RunAsync("iscsi-test-cu", ["--test=iSCSI", "-d", "-V", d.Url()], timeout: TimeSpan.FromMinutes(3));
        var results = CunitResults.Parse(r.Output);
        Assert.True(results.Count == 15, $"expected the 15 tests of the iSCSI suite, parsed {results.Count}:\n{r.Output}");
        var bad = results.Where(t => t.Verdict != "passed" || t.Skipped).ToList();
        Assert.True(bad.Count == 0, "not passed: " + string.Join(", ", bad.Select(b => $"{b.Name} ({(b.Skipped ? "skipped" : b.Verdict)})")) + "\n" + r.Output);
    }
}
