using System.Diagnostics;
using Xunit.Abstractions;

namespace HandlerRuntime.Filters.Tests;

/// <summary>
/// The device layer's errno-to-sense mapping, end to end: error/ under file LUNs fails reads or
/// writes with each errno, a real initiator sees the sense an array would send, the daemon's
/// other LUNs keep serving meanwhile, and removing error/'s trigger file switches the faults off.
/// </summary>
public sealed class ErrorSenseTests(ITestOutputHelper output)
{
    private sealed record Mapping(string Name, string Options, bool Write, string Expected);

    private static readonly Mapping[] Mappings =
    [
        new("eio-read", "errno=EIO", false, "MEDIUM ERROR 11h/00h"),      // UNRECOVERED READ ERROR
        new("eio-write", "errno=EIO", true, "MEDIUM ERROR 0Ch/00h"),      // WRITE ERROR
        new("enospc", "errno=ENOSPC,ops=write", true, "DATA PROTECT 27h/07h"), // SPACE ALLOCATION FAILED WRITE PROTECT
        new("erofs", "errno=EROFS,ops=write", true, "DATA PROTECT 27h/00h"),   // WRITE PROTECTED
        new("enotconn", "errno=ENOTCONN,ops=read", false, "NOT READY 04h/00h"),
        new("etimedout", "errno=ETIMEDOUT,ops=read,delay-ms=300", false, "ABORTED COMMAND 08h/01h"), // COMMUNICATION TIMEOUT, after a slow failure
        new("enomem", "errno=ENOMEM,ops=read", false, "BUSY"),
        new("bug", "errno=bug,ops=read", false, "HARDWARE ERROR 44h/00h"),  // INTERNAL TARGET FAILURE: not a store's errno
    ];

    [Fact]
    public async Task Each_errno_reaches_the_initiator_as_its_sense_while_other_luns_serve_and_the_trigger_file_switches_faults_off()
    {
        using var dir = new TempDir("hrt-error");
        var trigger = dir.File("faults-on");
        // LUN 0 is a plain file LUN; LUN n (from 1) fails with mapping n-1 while the trigger file exists.
        var names = Mappings.Select(m => m.Name.Replace("-read", "").Replace("-write", "")).Distinct().ToList();
        var luns = new List<System.Text.Json.Nodes.JsonObject> { Scsi.Lun("plain", "file/" + dir.File("plain.img"), "16M", 0) };
        foreach (var (name, i) in names.Select((n, i) => (n, i)))
            luns.Add(Scsi.Lun(name, $"error/{Mappings.First(m => m.Name.StartsWith(name)).Options},file={trigger}@file/{dir.File(name + ".img")}", "16M", i + 1));
        await using var d = await Scsi.StartAsync(luns);
        ulong LunOf(Mapping m) => (ulong)names.IndexOf(m.Name.Replace("-read", "").Replace("-write", "")) + 1;
        await using var ini = await Scsi.LoginAsync(d, [.. Enumerable.Range(0, luns.Count).Select(i => (ulong)i)]);

        // Faults off: every LUN works.
        foreach (var lun in Enumerable.Range(0, luns.Count))
            await Scsi.WriteAndVerifyAsync(ini, (ulong)lun, 64, Scsi.Random(4096, lun), $"LUN {lun} before the faults");

        File.WriteAllText(trigger, "");
        var seen = new List<string>();
        var round = 0;
        foreach (var m in Mappings)
        {
            var watch = Stopwatch.StartNew();
            var reply = m.Write
                ? await Scsi.WriteAsync(ini, LunOf(m), 128, Scsi.Random(4096, 99))
                : await Scsi.ReadAsync(ini, LunOf(m), 64, 8);
            var answer = reply.Describe();
            seen.Add($"{m.Name,-10} {(m.Write ? "WRITE(10)" : "READ(10)"),-9} -> {answer}");
            Assert.True(answer == m.Expected, $"{m.Name}: expected {m.Expected}, the initiator saw {answer}");
            if (m.Name == "etimedout")
                Assert.True(watch.ElapsedMilliseconds >= 300, $"the slow failure took only {watch.ElapsedMilliseconds} ms");
            // The daemon's other LUNs keep serving, a failing one's other operation too.
            await Scsi.WriteAndVerifyAsync(ini, 0, (uint)(256 + 8 * round), Scsi.Random(4096, 1000 + round), $"plain LUN after {m.Name}");
            round++;
        }
        output.WriteLine("errno -> what the initiator saw:\n" + string.Join('\n', seen));

        // A third-party initiator (qemu-io over libiscsi) sees the EIO read as an I/O error, and the plain LUN serve it.
        var qemu = await Daemons.RunAsync("qemu-io", ["-f", "raw", "-c", "read 0 4k", d.Url(1)]);
        Assert.Contains("Input/output error", qemu.Output);
        await Daemons.QemuIoAsync(d.Url(0), "write -P 0x6b 1M 64k", "read -P 0x6b 1M 64k");

        // The trigger file removed, the same LUNs read and write correctly.
        File.Delete(trigger);
        foreach (var lun in Enumerable.Range(1, luns.Count - 1))
        {
            await Scsi.WriteAndVerifyAsync(ini, (ulong)lun, 512, Scsi.Random(8192, 500 + lun), $"LUN {lun} after the faults were switched off");
            var r = await Scsi.ReadAsync(ini, (ulong)lun, 64, 8);
            Assert.True(r.Data.AsSpan().SequenceEqual(Scsi.Random(4096, lun)), $"LUN {lun}: data written before the faults changed");
        }
        await Daemons.QemuIoAsync(d.Url(1), "write -P 0x2e 2M 128k", "read -P 0x2e 2M 128k");
        Assert.False(d.HasExited);
    }
}
