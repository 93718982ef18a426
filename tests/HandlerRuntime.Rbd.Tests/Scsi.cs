using System.Buffers.Binary;

namespace HandlerRuntime.Rbd.Tests;

/// <summary>CDBs and sense decoding these tests need beyond TestSupport's Cdbs.</summary>
internal static class Scsi
{
    public const string Target = HrtDaemon.DefaultTarget;

    /// <summary>COMPARE AND WRITE (SBC-3 5.3): LBA in bytes 2-9, NUMBER OF LOGICAL BLOCKS in byte 13.</summary>
    public static byte[] CompareAndWrite(ulong lba, byte blocks)
    {
        var cdb = new byte[16];
        cdb[0] = 0x89;
        BinaryPrimitives.WriteUInt64BigEndian(cdb.AsSpan(2), lba);
        cdb[13] = blocks;
        return cdb;
    }

    /// <summary>REPORT TARGET PORT GROUPS (MAINTENANCE IN, service action 0Ah).</summary>
    public static byte[] ReportTargetPortGroups(uint alloc = 64)
    {
        var cdb = new byte[12];
        cdb[0] = 0xA3;
        cdb[1] = 0x0A;
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(6), alloc);
        return cdb;
    }

    /// <summary>GET LBA STATUS (SERVICE ACTION IN(16), 12h).</summary>
    public static byte[] GetLbaStatus(ulong lba, uint alloc = 1024)
    {
        var cdb = new byte[16];
        cdb[0] = 0x9E;
        cdb[1] = 0x12;
        BinaryPrimitives.WriteUInt64BigEndian(cdb.AsSpan(2), lba);
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(10), alloc);
        return cdb;
    }

    /// <summary>Whether <paramref name="actual"/> holds <paramref name="expected"/> at <paramref name="offset"/>.</summary>
    public static bool Same(byte[] expected, byte[] actual, int offset = 0)
        => actual.Length >= offset + expected.Length && expected.AsSpan().SequenceEqual(actual.AsSpan(offset, expected.Length));

    /// <summary>Where <paramref name="actual"/> first differs from <paramref name="expected"/>, for failure messages.</summary>
    public static string Diff(byte[] expected, byte[] actual)
    {
        var at = expected.AsSpan().CommonPrefixLength(actual);
        return at == expected.Length && at == actual.Length ? "equal"
            : $"first difference at byte {at} (block {at / 512}): expected {(at < expected.Length ? expected[at] : -1):X2}, got {(at < actual.Length ? actual[at] : -1):X2}; lengths {expected.Length} and {actual.Length}";
    }

    /// <summary>The access state REPORT TARGET PORT GROUPS reports for the LU's port group, past unit attentions (2Ah/06h among them).</summary>
    public static async Task<int> AccessStateAsync(RawInitiator s, ulong lun = 0)
    {
        RawInitiator.Reply r = null!;
        for (var i = 0; i < 5; i++)
        {
            r = await s.CommandAsync(ReportTargetPortGroups(), expectedIn: 64, lun: lun);
            if (r.Status == 0)
                return r.Data[4] & 0x0F;
            if (r.SenseCode.Key != 0x06)
                break;
        }
        throw new Xunit.Sdk.XunitException("REPORT TARGET PORT GROUPS failed: " + r.Describe());
    }

    /// <summary>GET LBA STATUS descriptors: (LBA, blocks, deallocated).</summary>
    public static List<(ulong Lba, uint Blocks, bool Deallocated)> LbaStatus(RawInitiator.Reply r)
    {
        var n = (int)(BinaryPrimitives.ReadUInt32BigEndian(r.Data) - 4) / 16;
        var list = new List<(ulong, uint, bool)>();
        for (var i = 0; i < n; i++)
        {
            var d = r.Data.AsSpan(8 + 16 * i);
            list.Add((BinaryPrimitives.ReadUInt64BigEndian(d), BinaryPrimitives.ReadUInt32BigEndian(d[8..]), (d[12] & 0x0F) == 1));
        }
        return list;
    }

    /// <summary>A logged-in session to LUN numbers of the default target, past the first unit attention.</summary>
    public static async Task<RawInitiator> SessionAsync(HrtDaemon daemon, string initiator, ulong isid = 0x400000000001)
    {
        var s = await RawInitiator.ConnectAsync(daemon.Port);
        var status = await s.LoginAsync(initiator, Target, isid: isid);
        Assert.True(status == 0, $"login as {initiator} failed: {status:X4}");
        return s;
    }

    /// <summary>Sends TEST UNIT READY until GOOD (unit attentions of a new nexus are consumed), at most 20 times.</summary>
    public static async Task ReadyAsync(RawInitiator s, ulong lun)
    {
        RawInitiator.Reply r = null!;
        for (var i = 0; i < 20; i++)
        {
            r = await s.CommandAsync(Cdbs.TestUnitReady(), lun: lun);
            if (r.Status == 0)
                return;
        }
        Assert.Fail($"LUN {lun} did not become ready: {r.Describe()}");
    }
}
