using FsCheck;
using FsCheck.Fluent;
using HandlerRuntime.Handlers.Zbc;
using HandlerRuntime.Sdk;
using Xunit.Abstractions;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>
/// Model-based property test: random devices and random sequences of writes, reads, zone
/// commands, reports, flushes, reopens and zone failures, run through the SCSI core on a
/// real file and against <see cref="ReferenceZones"/>. After every command the status and
/// sense, the data read, and every zone's condition and write pointer must agree.
/// </summary>
public sealed class ModelPropertyTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir dir = new("zbc-model");
    private long commands;
    private long sequences;
    private long device;

    public void Dispose() => dir.Dispose();

    public sealed record DeviceSpec(ZoneModel Model, int LbaSize, int Zones, bool RuntZone, int Conventional, int Open, bool Unrestricted)
    {
        public override string ToString() => $"{(Model == ZoneModel.HostManaged ? "HM" : "HA")} lba-{LbaSize} zones {Zones}{(RuntZone ? " (runt last)" : "")} conv-{Conventional} open-{Open} urswrz-{(Unrestricted ? 1 : 0)}";
    }

    public abstract record Command;
    /// <summary>Where: 0 at the pointer, 1 the pointer + Offset, 2 the zone start + Offset, 3 up to the zone end, 4 across the zone end.</summary>
    public sealed record Write(int Zone, int Where, int Offset, int Blocks, bool Fua) : Command;
    public sealed record Read(int Zone, int Offset, int Blocks) : Command;
    public sealed record Manage(ZoneAction Action, int Zone, bool All, int Misalign) : Command;
    public sealed record Report(int Zone, int Offset, byte Option, bool Partial, int Room) : Command;
    public sealed record Flush : Command;
    public sealed record Reopen : Command;
    public sealed record FailZone(int Zone, ZoneCondition Condition) : Command;

    private static Gen<DeviceSpec> Specs =>
        from model in Gen.Elements(ZoneModel.HostManaged, ZoneModel.HostManaged, ZoneModel.HostAware)
        from lba in Gen.Elements(512, 4096)
        from zones in Gen.Choose(3, 9)
        from runt in Gen.Elements(false, false, true)
        from conv in Gen.Choose(0, 2)
        from open in Gen.Choose(1, 4)
        from unrestricted in Gen.Elements(true, true, false)
        select new DeviceSpec(model, lba, zones, runt, Math.Min(conv, zones - 1), open, unrestricted);

    private static Gen<Command> Commands
    {
        get
        {
            var zone = Gen.Choose(0, 9);
            var blocks = Gen.Frequency((6, Gen.Choose(1, 16)), (3, Gen.Choose(17, 300)), (1, Gen.Choose(301, 2100)));
            var write = from z in zone
                        from position in Gen.Frequency((10, Gen.Constant(0)), (2, Gen.Constant(1)), (2, Gen.Constant(2)), (3, Gen.Constant(3)), (1, Gen.Constant(4)))
                        from offset in Gen.Choose(0, 40)
                        from n in blocks
                        from fua in Gen.Frequency((12, Gen.Constant(false)), (1, Gen.Constant(true)))
                        select (Command)new Write(z, position, offset, n, fua);
            var read = from z in zone from offset in Gen.Choose(-8, 300) from n in blocks select (Command)new Read(z, offset, n);
            var manage = from action in Gen.Elements(ZoneAction.Open, ZoneAction.Close, ZoneAction.Finish, ZoneAction.ResetWritePointer)
                         from z in zone
                         from all in Gen.Frequency((5, Gen.Constant(false)), (1, Gen.Constant(true)))
                         from misalign in Gen.Frequency((12, Gen.Constant(0)), (1, Gen.Choose(1, 5000)))
                         select (Command)new Manage(action, z, all, misalign);
            var report = from z in zone
                         from offset in Gen.Choose(0, 100)
                         from option in Gen.Elements<byte>(0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x11, 0x3F)
                         from partial in Gen.Elements(false, true)
                         from room in Gen.Choose(0, 12)
                         select (Command)new Report(z, offset, option, partial, room);
            var fail = from z in zone
                       from c in Gen.Elements(ZoneCondition.ReadOnly, ZoneCondition.Offline, ZoneCondition.Empty, ZoneCondition.Empty)
                       select (Command)new FailZone(z, c);
            return Gen.Frequency(
                (40, write), (12, read), (20, manage), (6, report),
                (2, Gen.Constant((Command)new Flush())), (1, Gen.Constant((Command)new Reopen())), (1, fail));
        }
    }

    private static IEnumerable<(DeviceSpec, Command[])> Shrink((DeviceSpec Spec, Command[] Commands) value)
    {
        var cmds = value.Commands;
        // drop halves, quarters... then single commands: the shortest failing sequence is the one to read
        for (var chunk = cmds.Length / 2; chunk >= 1; chunk /= 2)
            for (var at = 0; at + chunk <= cmds.Length; at += chunk)
                yield return (value.Spec, cmds[..at].Concat(cmds[(at + chunk)..]).ToArray());
    }

    [Fact]
    public async Task Device_agrees_with_the_reference_model()
    {
        var tests = int.TryParse(Environment.GetEnvironmentVariable("HRT_ZBC_MODEL_SEQUENCES"), out var n) ? n : 80;
        var cases = Gen.Zip(Specs, Gen.Choose(60, 160).SelectMany(count => Commands.ArrayOf(count)), (spec, script) => (spec, script));
        var property = Prop.ForAll(Arb.From(cases, Shrink), value => Run(value.Item1, value.Item2));
        var config = FsCheck.Config.QuickThrowOnFailure.WithMaxTest(tests).WithQuietOnSuccess(true);
        await Task.Run(() => Check.One(config, property));
        output.WriteLine($"model-based test: {sequences} sequences, {commands} commands, all agreeing with the reference model");
        Assert.True(commands >= 1000, $"only {commands} commands ran");
    }

    private bool Run(DeviceSpec spec, Command[] script)
    {
        RunAsync(spec, script).GetAwaiter().GetResult();
        return true;
    }

    private async Task RunAsync(DeviceSpec spec, Command[] script)
    {
        Interlocked.Increment(ref sequences);
        var path = dir.File($"m{Interlocked.Increment(ref device)}.zbc");
        var zoneBlocks = (1L << 20) / spec.LbaSize;
        var capacity = spec.Zones * zoneBlocks - (spec.RuntZone ? zoneBlocks / 2 : 0);
        var options = $"model-{(spec.Model == ZoneModel.HostManaged ? "HM" : "HA")}/lba-{spec.LbaSize}/zsize-1/conv-{spec.Conventional}/open-{spec.Open}/urswrz-{(spec.Unrestricted ? 1 : 0)}";
        var h = await ZbcKit.HarnessAsync($"{options}@{path}", capacity * spec.LbaSize);
        try
        {
            var layout = ((ZbcDevice)h.Device).Layout;
            var model = new ReferenceZones(spec.Model, capacity, zoneBlocks, spec.Conventional, layout.OpenZones, spec.Unrestricted);
            var zones = model.Zones.Count;
            long writeId = 0;
            for (var step = 0; step < script.Length; step++)
            {
                var command = script[step];
                Interlocked.Increment(ref commands);
                var at = $"{spec}, step {step} {command}";
                switch (command)
                {
                    case Write w:
                    {
                        var z = model.Zones[w.Zone % zones];
                        var lba = w.Where switch
                        {
                            0 => z.Conventional ? z.Start : z.Wp,
                            1 => z.Wp + w.Offset,
                            2 => z.Start + w.Offset,
                            3 => z.Conventional ? z.Start + w.Offset : z.Wp,
                            _ => z.End - 1 - w.Offset % 8,
                        };
                        var blocks = w.Where switch
                        {
                            3 => (int)Math.Max(1, Math.Min(z.End - lba, 16384)),
                            4 => 2 + w.Offset % 8 + w.Blocks % 8,
                            _ => w.Blocks,
                        };
                        blocks = Math.Min(blocks, (8 << 20) / spec.LbaSize); // the runtime's transfer limit
                        lba = Math.Min(lba, model.Capacity); // past the end on purpose is fine: LBA OUT OF RANGE
                        var id = ++writeId;
                        var expected = model.Write(lba, blocks, id);
                        var r = await h.RunAsync(ZbcKit.Write16(lba, blocks, w.Fua), ZbcKit.Pattern(lba, blocks, spec.LbaSize, id));
                        Expect(r, expected, at + $" lba {lba} blocks {blocks}");
                        break;
                    }
                    case Read rd:
                    {
                        var z = model.Zones[rd.Zone % zones];
                        var lba = Math.Clamp(z.Wp + rd.Offset, 0, model.Capacity);
                        var blocks = Math.Min(rd.Blocks, (1 << 20) / spec.LbaSize);
                        var expected = model.Read(lba, blocks, out var ids);
                        var r = await h.RunAsync(ZbcKit.Read16(lba, blocks), allocation: blocks * spec.LbaSize);
                        Expect(r, expected, at + $" lba {lba} blocks {blocks}");
                        if (expected is null)
                            for (var b = 0; b < blocks; b++)
                            {
                                var got = ZbcKit.WriteIdOf(r.DataIn.AsSpan(b * spec.LbaSize, spec.LbaSize), lba + b);
                                if (got != ids[b])
                                    throw new Xunit.Sdk.XunitException($"{at}: block {lba + b} holds write {got}, the model says {ids[b]}");
                            }
                        break;
                    }
                    case Manage m:
                    {
                        var id = m.All ? 0 : model.Zones[m.Zone % zones].Start + m.Misalign;
                        var expected = model.Manage(m.Action, id, m.All);
                        Expect(await h.RunAsync(ZbcKit.ZoneOut(m.Action, id, m.All)), expected, at);
                        break;
                    }
                    case Report rp:
                    {
                        var start = Math.Min(model.Zones[rp.Zone % zones].Start + rp.Offset, model.Capacity - 1);
                        var allocation = 64 + rp.Room * 64;
                        var r = await h.RunAsync(ZbcKit.ReportZones(start, allocation, (ZoneReportingOptions)rp.Option, rp.Partial));
                        Expect(r, null, at);
                        var report = ZbcKit.ParseReport(r.DataIn);
                        var matching = model.Describe().Where(d => d.Start + d.Length > start && Matches(d, rp.Option)).ToArray();
                        var listed = rp.Partial ? Math.Min(matching.Length, rp.Room) : matching.Length;
                        if (report.ListLength != listed * 64 || !report.Zones.SequenceEqual(matching.Take(rp.Room)))
                            throw new Xunit.Sdk.XunitException($"{at}: report lists {report.ListLength / 64} zones [{string.Join(", ", report.Zones)}], the model [{string.Join(", ", matching.Take(rp.Room))}] of {listed}");
                        break;
                    }
                    case Flush:
                        Expect(await h.RunAsync(ZbcKit.SyncCache10), null, at);
                        break;
                    case Reopen:
                        await h.DisposeAsync();
                        h = await ZbcKit.HarnessAsync($"@{path}");
                        model.Reopen();
                        break;
                    case FailZone f:
                    {
                        var z = model.Zones[f.Zone % zones];
                        if (z.Conventional)
                            break;
                        await ((ZbcDevice)h.Device).SetZoneConditionAsync(z.Start, f.Condition, default);
                        model.SetCondition(f.Zone % zones, f.Condition);
                        break;
                    }
                }
                var actual = ((ZbcDevice)h.Device).Snapshot();
                var wanted = model.Describe();
                for (var i = 0; i < zones; i++)
                    if (actual[i] != wanted[i])
                        throw new Xunit.Sdk.XunitException($"{at}: zone {i} is {actual[i]}, the model says {wanted[i]}");
                var status = ((ZbcDevice)h.Device).GetStatus();
                if (status["implicitlyOpen"]!.GetValue<int>() != model.Implicit || status["explicitlyOpen"]!.GetValue<int>() != model.Explicit)
                    throw new Xunit.Sdk.XunitException($"{at}: the device counts {status["implicitlyOpen"]} implicitly and {status["explicitlyOpen"]} explicitly open zones, the conditions say {model.Implicit} and {model.Explicit}");
                if (spec.Model == ZoneModel.HostManaged && model.Implicit + model.Explicit > layout.OpenZones)
                    throw new Xunit.Sdk.XunitException($"{at}: {model.Implicit + model.Explicit} zones open, more than {layout.OpenZones}");
            }
        }
        finally
        {
            await h.DisposeAsync();
            File.Delete(path);
        }
    }

    private static bool Matches(ZoneDescriptor d, byte option) => option switch
    {
        0x00 => true,
        0x01 => d.Condition == ZoneCondition.Empty,
        0x02 => d.Condition == ZoneCondition.ImplicitlyOpened,
        0x03 => d.Condition == ZoneCondition.ExplicitlyOpened,
        0x04 => d.Condition == ZoneCondition.Closed,
        0x05 => d.Condition == ZoneCondition.Full,
        0x06 => d.Condition == ZoneCondition.ReadOnly,
        0x07 => d.Condition == ZoneCondition.Offline,
        0x10 => d.ResetRecommended,
        0x11 => d.NonSequential,
        _ => d.Condition == ZoneCondition.NotWritePointer,
    };

    private static void Expect(ScsiResult r, SenseData? expected, string at)
    {
        if (expected is null && !r.Good)
            throw new Xunit.Sdk.XunitException($"{at}: expected GOOD, got {r}");
        if (expected is { } e && (r.Status != ScsiStatus.CheckCondition || r.Sense.Key != e.Key || r.Sense.Asc != e.Asc || r.Sense.Ascq != e.Ascq))
            throw new Xunit.Sdk.XunitException($"{at}: expected {e}, got {r}");
    }
}
