using System.Text.RegularExpressions;

namespace HandlerRuntime.TestSupport;

/// <summary>One test's verdict in CUnit's output (libiscsi's iscsi-test-cu), named <c>Suite.Test</c>.</summary>
public sealed record CunitResult(string Name, string Verdict, bool Skipped);

/// <summary>
/// Reads CUnit's per-test verdicts. CUnit counts a test that printed [SKIPPED] as passed; the
/// callers judge a skip themselves. The verdict is CUnit's own line for each test ("passed" or
/// "FAILED" with its failed assertions) rather than a search for the word FAILED:
/// iSCSIDataSnInvalid logs "[FAILED] WRITE10 command failed" for each write it expects to fail,
/// and the suite's teardown output (printed after a test's verdict) belongs to no test.
/// </summary>
public static partial class CunitResults
{
    public static List<CunitResult> Parse(string output)
    {
        var results = new List<CunitResult>();
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
            results.Add(new CunitResult(name, verdict.Success ? verdict.Groups[1].Value : "no verdict", body.Contains("[SKIPPED]")));
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
