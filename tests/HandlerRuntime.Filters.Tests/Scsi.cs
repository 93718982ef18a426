using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace HandlerRuntime.Filters.Tests;

/// <summary>What the filter tests share: a logged-in raw initiator, LUN configs, file digests.</summary>
internal static class Scsi
{
    public const byte Good = 0x00, CheckCondition = 0x02, Busy = 0x08;
    public const int NotReady = 0x2, MediumError = 0x3, HardwareError = 0x4, DataProtect = 0x7, AbortedCommand = 0xB;

    /// <summary>A raw initiator logged in to the daemon's default target, the power-on unit attention of <paramref name="luns"/> consumed.</summary>
    public static async Task<RawInitiator> LoginAsync(HrtDaemon d, params ulong[] luns)
    {
        var ini = await RawInitiator.ConnectAsync(d.Port);
        var status = await ini.LoginAsync("iqn.2026-11.org.handler-runtime.test:filters", HrtDaemon.DefaultTarget);
        Assert.True(status == 0, $"login refused: {status:x4}");
        foreach (var lun in luns)
            await ClearUnitAttentionAsync(ini, lun);
        return ini;
    }

    public static async Task ClearUnitAttentionAsync(RawInitiator ini, ulong lun)
    {
        for (var i = 0; i < 8; i++)
            if ((await ini.CommandAsync(Cdbs.TestUnitReady(), lun: lun)).Status == Good)
                return;
        Assert.Fail($"LUN {lun} did not become ready");
    }

    public static Task<RawInitiator.Reply> ReadAsync(RawInitiator ini, ulong lun, uint lba, ushort blocks, int blockSize = 512)
        => ini.CommandAsync(Cdbs.Read10(lba, blocks), expectedIn: blocks * blockSize, lun: lun);

    public static Task<RawInitiator.Reply> WriteAsync(RawInitiator ini, ulong lun, uint lba, byte[] data)
        => ini.CommandAsync(Cdbs.Write10(lba, (ushort)(data.Length / 512)), dataOut: data, lun: lun);

    /// <summary>Writes, reads back and compares; fails with what the initiator was told.</summary>
    public static async Task WriteAndVerifyAsync(RawInitiator ini, ulong lun, uint lba, byte[] data, string what)
    {
        var w = await WriteAsync(ini, lun, lba, data);
        Assert.True(w.Status == Good, $"{what}: WRITE answered {w.Describe()}");
        var r = await ReadAsync(ini, lun, lba, (ushort)(data.Length / 512));
        Assert.True(r.Status == Good, $"{what}: READ answered {r.Describe()}");
        Assert.True(r.Data.AsSpan().SequenceEqual(data), $"{what}: read back differs from what was written");
    }

    /// <summary>A LUN entry for the daemon's config.</summary>
    public static JsonObject Lun(string name, string cfgstring, string? size, int number, bool readOnly = false)
    {
        var lun = new JsonObject { ["name"] = name, ["cfgstring"] = cfgstring, ["lun"] = number };
        if (size is not null)
            lun["size"] = size;
        if (readOnly)
            lun["readOnly"] = true;
        return lun;
    }

    public static Task<HrtDaemon> StartAsync(IEnumerable<JsonObject> luns, Action<JsonObject>? configure = null, string? handlerPath = null)
        => HrtDaemon.StartAsync(config =>
        {
            var array = (JsonArray)config["luns"]!;
            foreach (var lun in luns)
                array.Add(lun);
            configure?.Invoke(config);
        }, handlerPath);

    public static string Sha256(string path)
    {
        using var f = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(f));
    }

    public static byte[] Random(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    /// <summary>A file of <paramref name="size"/> bytes of seeded random data.</summary>
    public static void RandomFile(string path, int size, int seed) => File.WriteAllBytes(path, Random(size, seed));
}
