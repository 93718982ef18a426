using System.Text.RegularExpressions;

namespace HandlerRuntime.Iscsi.Tests;

/// <summary>
/// EXTENDED COPY and RECEIVE COPY RESULTS judged from outside over iSCSI: libiscsi's
/// compliance suites for both commands against a file LUN given twice (every test must run
/// and pass: no skip, no failure, by CUnit's own verdict for each test), and QEMU's copy
/// offload (qemu-img convert -C sends EXTENDED COPY with one CSCD per LU) between a file LUN
/// and a ram LUN of the same daemon.
/// </summary>
public sealed partial class ExtendedCopyTests
{
    [Theory]
    [InlineData("SCSI.ExtendedCopy", 6)]
    [InlineData("SCSI.ReceiveCopyResults", 2)]
    public async Task Libiscsi_suite_runs_every_test_and_passes_on_a_file_lun(string suite, int tests)
    {
        using var dir = new TempDir("xcopy-cu");
        await using var d = await Daemons.StartAsync([("f0", "file/" + dir.File("lun0.img"), "64M")]);
        var url = d.Url(0);
        // -d: the data-writing tests (EXTENDED COPY is one); the URL twice, as the judge runs it.
        var r = await Daemons.RunAsync("iscsi-test-cu", [$"--test={suite}", "-d", "-V", url, url], timeout: TimeSpan.FromMinutes(3));
        var results = CunitResults.Parse(r.Output);
        Assert.True(results.Count == tests, $"expected the {tests} tests of {suite}, parsed {results.Count}:\n{r.Output}");
        var bad = results.Where(t => t.Verdict != "passed" || t.Skipped).ToList();
        Assert.True(bad.Count == 0, "not passed: " + string.Join(", ", bad.Select(b => $"{b.Name} ({(b.Skipped ? "skipped" : b.Verdict)})")) + "\n" + r.Output);
        Assert.Contains("Tests completed with return value: 0", r.Output);
    }

    [Fact]
    public async Task Qemu_img_copy_offload_between_a_file_lun_and_a_ram_lun_is_byte_exact()
    {
        using var dir = new TempDir("xcopy-qemu");
        var image = dir.File("source.raw");
        var data = new byte[24 << 20];
        new Random(77).NextBytes(data);
        data.AsSpan(5 << 20, 1 << 20).Clear(); // a zero run, which QEMU may skip or copy
        await File.WriteAllBytesAsync(image, data);
        // Log every command, to see that the copy really went through EXTENDED COPY.
        await using var d = await Daemons.StartAsync(
            [("f0", "file/" + dir.File("lun0.img"), "24M"), ("r1", "ram/@", "24M")],
            config => config["logLevel"] = "debug_scsi_cmd");

        await Daemons.RunOkAsync("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", image, d.Url(0)]);
        await Daemons.RunOkAsync("qemu-img", ["convert", "-C", "-n", "-f", "raw", "-O", "raw", d.Url(0), d.Url(1)]);
        var compared = await Daemons.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", image, d.Url(1)]);
        Assert.True(compared.ExitCode == 0, compared.ToString());

        // QEMU sends EXTENDED COPY to the destination, naming the source and itself by NAA:
        // every copy ran on LU r1 and reached f0 as its source.
        var log = await ReadLogAsync(d.LogFile);
        Assert.True(XcopyGood().Matches(log).Count >= 2, "expected several EXTENDED COPY commands in the log:\n" + log[^Math.Min(log.Length, 4000)..]);
        Assert.DoesNotMatch(@"EXTENDED COPY\(LID1\)\) -> CHECK CONDITION", log);
    }

    private static async Task<string> ReadLogAsync(string path)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream);
        return await reader.ReadToEndAsync();
    }

    [GeneratedRegex(@"LUN r1 CDB 83[0-9A-F]+ \(EXTENDED COPY\(LID1\)\) -> ""?Good")]
    private static partial Regex XcopyGood();
}
