using Xunit.Abstractions;

namespace HandlerRuntime.Filters.Tests;

/// <summary>
/// SANITIZE CRYPTOGRAPHIC ERASE on a crypt/ LUN: libiscsi's Sanitize suite runs it (with
/// --allow-sanitize) and judges every test, and afterwards data written before an erase reads
/// back as noise while the ciphertext below stays where it was: the key changed, not the data.
/// </summary>
public sealed class CryptoEraseTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Libiscsi_sanitize_suite_runs_crypto_erase_on_a_crypt_lun_and_old_data_is_unreadable_after_it()
    {
        using var dir = new TempDir("hrt-crypt");
        var inner = dir.File("secret.img");
        // Sanitize.Reset checks an OVERWRITE is still running across resets about five seconds in: 64 MiB at 8 MiB/s takes eight.
        await using var d = await Scsi.StartAsync([Scsi.Lun("secret", "crypt/@file/" + inner, "64M", 0)], c => c["sanitizeRate"] = "8M");

        var r = await Daemons.RunAsync("iscsi-test-cu", ["--test=SCSI.Sanitize", "-d", "-S", d.Url()], timeout: TimeSpan.FromMinutes(6));
        var results = CunitResults.Parse(r.Output);
        output.WriteLine("libiscsi SCSI.Sanitize on crypt/@file//...:\n" + string.Join('\n', results.Select(t => $"  {t.Name}: {t.Verdict}{(t.Skipped ? " [SKIPPED]" : "")}")));
        Assert.True(results.Count == 11, $"expected the 11 tests of the Sanitize suite, parsed {results.Count}:\n{r.Output}");
        var bad = results.Where(t => t.Verdict != "passed" || t.Skipped).ToList();
        Assert.True(bad.Count == 0, "not passed: " + string.Join(", ", bad.Select(b => $"{b.Name} ({(b.Skipped ? "skipped" : b.Verdict)})")) + "\n" + r.Output);
        Assert.Contains(results, t => t.Name == "Sanitize.CryptoErase" && t.Verdict == "passed" && !t.Skipped);
        // Our own erase, watched from both sides.
        await using var ini = await Scsi.LoginAsync(d, 0);
        var data = Scsi.Random(64 << 10, 77);
        await Scsi.WriteAndVerifyAsync(ini, 0, 1000, data, "before the crypto erase");
        var keyFile = Path.Combine(d.StateDirectory, "luns", "secret", "xts-key");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyFile));
        var keyBefore = await File.ReadAllBytesAsync(keyFile);
        var cipherBefore = ReadInner(inner, 1000 * 512L, data.Length);
        Assert.False(cipherBefore.AsSpan().SequenceEqual(data), "the inner file holds the plaintext");

        var erase = await ini.CommandAsync([0x48, 0x03, 0, 0, 0, 0, 0, 0, 0, 0]); // SANITIZE, CRYPTOGRAPHIC ERASE, no IMMED: answered when done
        Assert.True(erase.Status == Scsi.Good, $"SANITIZE CRYPTOGRAPHIC ERASE answered {erase.Describe()}");
        var after = await Scsi.ReadAsync(ini, 0, 1000, (ushort)(data.Length / 512));
        Assert.True(after.Status == Scsi.Good, $"READ after the erase answered {after.Describe()}");
        Assert.False(after.Data.AsSpan().SequenceEqual(data), "the data written before the crypto erase still reads back");
        Assert.True(after.Data.AsSpan().IndexOfAnyExcept((byte)0) >= 0, "the erased data reads as zeros: it was overwritten, not crypto-erased");
        Assert.True(ReadInner(inner, 1000 * 512L, data.Length).AsSpan().SequenceEqual(cipherBefore), "the ciphertext below changed: the erase rewrote data instead of replacing the key");
        Assert.False((await File.ReadAllBytesAsync(keyFile)).AsSpan().SequenceEqual(keyBefore), "the key file is unchanged");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyFile));

        // New data under the new key reads back, also after a restart (the new key was made durable).
        await Scsi.WriteAndVerifyAsync(ini, 0, 5000, data, "after the crypto erase");
        await ini.DisposeAsync();
        await d.RestartAsync();
        await using var again = await Scsi.LoginAsync(d, 0);
        var reread = await Scsi.ReadAsync(again, 0, 5000, (ushort)(data.Length / 512));
        Assert.True(reread.Data.AsSpan().SequenceEqual(data), "data written under the new key does not read back after a restart");
    }

    private static byte[] ReadInner(string path, long offset, int length)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var b = new byte[length];
        f.Position = offset;
        f.ReadExactly(b);
        return b;
    }
}
