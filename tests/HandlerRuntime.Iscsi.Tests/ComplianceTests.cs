using System.Text.RegularExpressions;

namespace HandlerRuntime.Iscsi.Tests;

/// <summary>
/// libiscsi's iSCSI protocol suite (iscsi-test-cu --test=iSCSI): every test must run and
/// pass. CUnit counts a test that printed [SKIPPED] as passed; here a skip is a failure.
/// The verdict is CUnit's own line for each test ("passed" or "FAILED" with its failed
/// assertions) rather than a search for the word FAILED: iSCSIDataSnInvalid logs
/// "[FAILED] WRITE10 command failed" for each write it expects to fail, and the suite's
/// teardown output (printed after a test's verdict) belongs to no test.
/// </summary>
public sealed partial class ComplianceTests
{
    [Fact]
    public async Task Libiscsi_iscsi_suite_runs_every_test_and_passes()
    {
        await using var d = await Daemons.StartRamAsync("128M");
        var r = await Daemons.RunAsync("iscsi-test-cu", ["--test=iSCSI", "-d", "-V", d.Url()], timeout: TimeSpan.FromMinutes(3));
        var results = Parse(r.Output);
        Assert.True(results.Count == 15, $"expected the 15 tests of the iSCSI suite, parsed {results.Count}:\n{r.Output}");
        var bad = results.Where(t => t.Verdict != "passed" || t.Skipped).ToList();
        Assert.True(bad.Count == 0, "not passed: " + string.Join(", ", bad.Select(b => $"{b.Name} ({(b.Skipped ? "skipped" : b.Verdict)})")) + "\n" + r.Output);
    }

    internal sealed record TestResult(string Name, string Verdict, bool Skipped);

    /// <summary>CUnit's per-test verdicts, named <c>Suite.Test</c>.</summary>
    internal static List<TestResult> Parse(string output)
    {
        var results = new List<TestResult>();
        var suites = SuiteStart().Matches(output);
        var blocks = TestStart().Split(output);
        var at = 0;
        foreach (var block in blocks.Skip(1))
        {
            at = output.IndexOf("  Test: " + block[..Math.Min(block.Length, 40)], at, StringComparison.Ordinal);
            var suite = suites.LastOrDefault(m => m.Index < at)?.Groups[1].Value;
            var name = (suite is null ? "" : suite + ".") + block[..block.IndexOf(' ')];
            var rest = block[(block.IndexOf("...", StringComparison.Ordinal) + 3)..];
            // The verdict follows "Name ..." directly when the test logged nothing, else starts a line.
            var verdict = rest.StartsWith("passed", StringComparison.Ordinal) || rest.StartsWith("FAILED", StringComparison.Ordinal)
                ? Verdict().Match(rest, 0) : Verdict().Match(rest);
            var body = verdict.Success ? rest[..verdict.Index] : rest;
            results.Add(new TestResult(name, verdict.Success ? verdict.Groups[1].Value : "no verdict", body.Contains("[SKIPPED]")));
        }
        return results;
    }

    [GeneratedRegex(@"^  Test: ", RegexOptions.Multiline)]
    private static partial Regex TestStart();

    [GeneratedRegex(@"^Suite: (\S+)", RegexOptions.Multiline)]
    private static partial Regex SuiteStart();

    [GeneratedRegex(@"(?:^|\G)(passed|FAILED)", RegexOptions.Multiline)]
    private static partial Regex Verdict();
}
