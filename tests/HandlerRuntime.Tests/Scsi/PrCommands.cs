using System.Buffers.Binary;
using System.Text;
using HandlerRuntime.Scsi;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Tests.Scsi;

/// <summary>Persistent reservation type codes as the TYPE field carries them (SPC-4 6.16.2).</summary>
public enum PrType : byte
{
    WriteExclusive = 1,
    ExclusiveAccess = 3,
    WriteExclusiveRegistrantsOnly = 5,
    ExclusiveAccessRegistrantsOnly = 6,
    WriteExclusiveAllRegistrants = 7,
    ExclusiveAccessAllRegistrants = 8,
}

/// <summary>CDBs and parameter lists for reservations, laid out by hand from SPC-4 6.15/6.16 and SPC-2 7.21-7.24.</summary>
public static class PrCdbs
{
    public const byte ReadKeys = 0, ReadReservation = 1, ReportCapabilities = 2, ReadFullStatus = 3;
    public const byte Register = 0, Reserve = 1, Release = 2, Clear = 3, Preempt = 4, PreemptAndAbort = 5, RegisterAndIgnore = 6, RegisterAndMove = 7;

    public static byte[] In(byte serviceAction, ushort allocation = 8192)
    {
        var c = new byte[10];
        c[0] = 0x5E;
        c[1] = serviceAction;
        BinaryPrimitives.WriteUInt16BigEndian(c.AsSpan(7), allocation);
        return c;
    }

    public static byte[] Out(byte serviceAction, PrType type, int parameterLength, byte scope = 0)
    {
        var c = new byte[10];
        c[0] = 0x5F;
        c[1] = serviceAction;
        c[2] = (byte)(scope << 4 | (byte)type);
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(5), (uint)parameterLength);
        return c;
    }

    /// <summary>The basic parameter list (24 bytes), with SPEC_I_PT TransportIDs appended when given.</summary>
    public static byte[] Parameters(ulong key, ulong serviceActionKey, bool aptpl = false, bool allTargetPorts = false, params byte[][] transportIds)
    {
        var ids = transportIds.SelectMany(t => t).ToArray();
        var p = new byte[24 + (transportIds.Length > 0 ? 4 + ids.Length : 0)];
        BinaryPrimitives.WriteUInt64BigEndian(p, key);
        BinaryPrimitives.WriteUInt64BigEndian(p.AsSpan(8), serviceActionKey);
        p[20] = (byte)((transportIds.Length > 0 ? 0x08 : 0) | (allTargetPorts ? 0x04 : 0) | (aptpl ? 0x01 : 0));
        if (transportIds.Length > 0)
        {
            BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(24), (uint)ids.Length);
            ids.CopyTo(p, 28);
        }
        return p;
    }

    /// <summary>The REGISTER AND MOVE parameter list.</summary>
    public static byte[] MoveParameters(ulong key, ulong serviceActionKey, ushort relativeTargetPort, byte[] transportId, bool unregister = false, bool aptpl = false)
    {
        var p = new byte[24 + transportId.Length];
        BinaryPrimitives.WriteUInt64BigEndian(p, key);
        BinaryPrimitives.WriteUInt64BigEndian(p.AsSpan(8), serviceActionKey);
        p[17] = (byte)((unregister ? 0x02 : 0) | (aptpl ? 0x01 : 0));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(18), relativeTargetPort);
        BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(20), (uint)transportId.Length);
        transportId.CopyTo(p, 24);
        return p;
    }

    /// <summary>An iSCSI TransportID: format 01b for a port name (<c>name,i,0xISID</c>), 00b for a device name.</summary>
    public static byte[] IscsiTransportId(string name, byte protocol = 5)
    {
        var text = Encoding.UTF8.GetBytes(name);
        var padded = Math.Max(20, (text.Length + 1 + 3) / 4 * 4);
        var t = new byte[4 + padded];
        t[0] = (byte)((name.Contains(",i,0x") ? 0x40 : 0x00) | protocol);
        BinaryPrimitives.WriteUInt16BigEndian(t.AsSpan(2), (ushort)padded);
        text.CopyTo(t, 4);
        return t;
    }

    public static byte[] Reserve6() => [0x16, 0, 0, 0, 0, 0];
    public static byte[] Release6() => [0x17, 0, 0, 0, 0, 0];
    public static byte[] Reserve10() => [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    public static byte[] Release10() => [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0];
}

/// <summary>One READ FULL STATUS descriptor, decoded by the test.</summary>
public sealed record FullStatus(ulong Key, bool AllTargetPorts, bool Holder, byte ScopeType, ushort RelativeTargetPort, byte TransportIdFormat, byte Protocol, string Name);

/// <summary>An initiator's view of the LU: one I_T nexus and helpers that send reservation commands through it.</summary>
public sealed class PrInitiator(ScsiHarness harness, ItNexus nexus)
{
    public ItNexus Nexus { get; } = nexus;

    public Task<ScsiResult> RunAsync(byte[] cdb, byte[]? data = null, int allocation = 1 << 20)
        => harness.RunAsync(cdb, data, allocation, Nexus);

    public Task<ScsiResult> OutAsync(byte serviceAction, ulong key, ulong serviceActionKey = 0, PrType type = 0, bool aptpl = false, bool allTargetPorts = false, params byte[][] transportIds)
    {
        var p = PrCdbs.Parameters(key, serviceActionKey, aptpl, allTargetPorts, transportIds);
        return RunAsync(PrCdbs.Out(serviceAction, type, p.Length), p);
    }

    public Task<ScsiResult> RegisterAsync(ulong key, bool aptpl = false, bool allTargetPorts = false)
        => OutAsync(PrCdbs.RegisterAndIgnore, 0, key, aptpl: aptpl, allTargetPorts: allTargetPorts);

    public Task<ScsiResult> UnregisterAsync(ulong key) => OutAsync(PrCdbs.Register, key, 0);

    public Task<ScsiResult> ReserveAsync(ulong key, PrType type) => OutAsync(PrCdbs.Reserve, key, 0, type);

    public Task<ScsiResult> ReleaseAsync(ulong key, PrType type) => OutAsync(PrCdbs.Release, key, 0, type);

    public Task<ScsiResult> MoveAsync(ulong key, ulong serviceActionKey, ushort relativeTargetPort, byte[] transportId, bool unregister = false)
    {
        var p = PrCdbs.MoveParameters(key, serviceActionKey, relativeTargetPort, transportId, unregister);
        return RunAsync(PrCdbs.Out(PrCdbs.RegisterAndMove, 0, p.Length), p);
    }

    public async Task<(uint Generation, ulong[] Keys)> ReadKeysAsync()
    {
        var d = Good(await RunAsync(PrCdbs.In(PrCdbs.ReadKeys)));
        var length = (int)BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(4));
        Assert.Equal(8 + length, d.Length);
        return (BinaryPrimitives.ReadUInt32BigEndian(d), Enumerable.Range(0, length / 8).Select(i => BinaryPrimitives.ReadUInt64BigEndian(d.AsSpan(8 + 8 * i))).ToArray());
    }

    /// <summary>READ RESERVATION: null when there is no reservation, else its key and type.</summary>
    public async Task<(ulong Key, PrType Type)?> ReadReservationAsync()
    {
        var d = Good(await RunAsync(PrCdbs.In(PrCdbs.ReadReservation)));
        var length = BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(4));
        if (length == 0)
        {
            Assert.Equal(8, d.Length);
            return null;
        }
        Assert.Equal(16U, length);
        Assert.Equal(24, d.Length);
        Assert.Equal(0, d[21] >> 4); // LU_SCOPE
        return (BinaryPrimitives.ReadUInt64BigEndian(d.AsSpan(8)), (PrType)(d[21] & 0x0F));
    }

    public async Task<(uint Generation, FullStatus[] Descriptors)> ReadFullStatusAsync()
    {
        var d = Good(await RunAsync(PrCdbs.In(PrCdbs.ReadFullStatus)));
        var length = (int)BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(4));
        Assert.Equal(8 + length, d.Length);
        var list = new List<FullStatus>();
        for (var at = 8; at < d.Length;)
        {
            var desc = d.AsSpan(at);
            var idLength = (int)BinaryPrimitives.ReadUInt32BigEndian(desc[20..]);
            var id = desc.Slice(24, idLength);
            Assert.Equal(idLength - 4, BinaryPrimitives.ReadUInt16BigEndian(id[2..]));
            Assert.Equal(0, idLength % 4);
            var text = id[4..];
            var name = Encoding.UTF8.GetString(text[..text.IndexOf((byte)0)]);
            list.Add(new FullStatus(BinaryPrimitives.ReadUInt64BigEndian(desc), (desc[12] & 2) != 0, (desc[12] & 1) != 0, desc[13],
                BinaryPrimitives.ReadUInt16BigEndian(desc[18..]), (byte)(id[0] >> 6), (byte)(id[0] & 0x0F), name));
            at += 24 + idLength;
        }
        return (BinaryPrimitives.ReadUInt32BigEndian(d), list.ToArray());
    }

    public async Task<uint> GenerationAsync() => (await ReadKeysAsync()).Generation;

    /// <summary>Asserts READ KEYS reports this PRGENERATION and exactly these keys, in order.</summary>
    public async Task ExpectKeysAsync(uint generation, params ulong[] keys)
    {
        var (g, k) = await ReadKeysAsync();
        Assert.Equal(keys, k);
        Assert.Equal(generation, g);
    }

    /// <summary>Asserts the next command sees exactly this unit attention (or none), and consumes it.</summary>
    public async Task ExpectUnitAttentionAsync(byte asc, byte ascq)
    {
        var r = await RunAsync(Cdbs.TestUnitReady());
        Assert.True(r.Status == ScsiStatus.CheckCondition, $"{Nexus.InitiatorPort}: expected UNIT ATTENTION {asc:X2}h/{ascq:X2}h, got {r}");
        Assert.Equal((SenseKey.UnitAttention, asc, ascq), (r.Sense.Key, r.Sense.Asc, r.Sense.Ascq));
    }

    public async Task ExpectNoUnitAttentionAsync()
    {
        var r = await RunAsync(Cdbs.TestUnitReady());
        Assert.True(r.Good, $"{Nexus.InitiatorPort}: expected no unit attention, got {r}");
    }

    public static byte[] Good(ScsiResult r)
    {
        Assert.True(r.Good, r.ToString());
        return r.DataIn;
    }
}

/// <summary>Assertions on reservation outcomes.</summary>
public static class PrAssert
{
    public static void Good(ScsiResult r, string? what = null) => Assert.True(r.Good, $"{what}: {r}");

    /// <summary>RESERVATION CONFLICT: status 18h and no sense data.</summary>
    public static void Conflict(ScsiResult r, string? what = null)
    {
        Assert.True(r.Status == ScsiStatus.ReservationConflict, $"{what}: expected RESERVATION CONFLICT, got {r}");
        Assert.Empty(r.SenseBytes);
    }

    public static void Sense(ScsiResult r, SenseKey key, byte asc, byte ascq = 0, string? what = null)
    {
        Assert.True(r.Status == ScsiStatus.CheckCondition, $"{what}: expected CHECK CONDITION {key} {asc:X2}h/{ascq:X2}h, got {r}");
        Assert.Equal((key, asc, ascq), (r.Sense.Key, r.Sense.Asc, r.Sense.Ascq));
    }

    public static void InvalidFieldInCdb(ScsiResult r, string? what = null) => Sense(r, SenseKey.IllegalRequest, 0x24, 0, what);

    public static void InvalidFieldInParameterList(ScsiResult r, string? what = null) => Sense(r, SenseKey.IllegalRequest, 0x26, 0, what);

    public static void ParameterListLengthError(ScsiResult r, string? what = null) => Sense(r, SenseKey.IllegalRequest, 0x1A, 0, what);
}

/// <summary>A ram LU (16 MiB of 512-byte blocks) behind a <see cref="ScsiHarness"/>, and initiators to talk to it.</summary>
public sealed class PrLun : IAsyncDisposable
{
    private static int nextInitiator;

    private PrLun(ScsiHarness harness) => Harness = harness;

    public ScsiHarness Harness { get; }

    public ScsiLun Lun => Harness.Lun;

    public static async Task<PrLun> CreateAsync(Handlers.BundledHandlers handlers, string? stateDirectory = null)
    {
        var device = await handlers.OpenAsync("ram/@", 16L << 20);
        return new PrLun(new ScsiHarness(device, stateDirectory: stateDirectory));
    }

    /// <summary>A new initiator port (its own initiator name unless one is given), with its power-on unit attention cleared.</summary>
    public async Task<PrInitiator> InitiatorAsync(string? initiatorName = null)
    {
        var name = initiatorName ?? $"iqn.2026-11.org.handler-runtime:pr-{Interlocked.Increment(ref nextInitiator)}";
        return await AttachAsync(ScsiHarness.NewNexus(name));
    }

    /// <summary>An initiator on any nexus (for example through another target port), with its power-on unit attention cleared.</summary>
    public async Task<PrInitiator> AttachAsync(ItNexus nexus)
    {
        var initiator = new PrInitiator(Harness, nexus);
        await Harness.ClearUnitAttentionAsync(nexus);
        return initiator;
    }

    public ValueTask DisposeAsync() => Harness.DisposeAsync();
}
