using System.Text.RegularExpressions;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Zbc.Tests;

/// <summary>
/// A tiny language for table rows, so each row reads as what it does. Ops, space separated,
/// <c>z</c> a zone number, <c>A</c> all zones:
/// <code>
/// w1:8      WRITE(16) 8 blocks at zone 1's write pointer      w1+3:8  at the pointer + 3
/// w1@5:8    WRITE(16) 8 blocks at zone 1's start + 5           we1     from the pointer to the zone end
/// rd1@0:8   READ(16) 8 blocks at zone 1's start                rd1+0:8 at zone 1's pointer
/// o1 c1 f1 r1   OPEN, CLOSE, FINISH, RESET WRITE POINTER zone 1;  oA cA fA rA  with ALL
/// sync      SYNCHRONIZE CACHE(16)
/// </code>
/// Every op but the last must succeed; the last one's result is returned.
/// </summary>
internal static partial class ZoneScript
{
    [GeneratedRegex(@"^(?:(?<op>w|rd)(?<zone>\d+)(?:(?<rel>[+@])(?<off>\d+))?:(?<n>\d+)|we(?<endzone>\d+)|(?<zop>[ocfr])(?<target>\d+|A)|(?<sync>sync))$")]
    private static partial Regex Op();

    public static async Task<ScsiResult> RunAsync(ScsiHarness h, string script, long zoneBlocks, int blockSize = 512)
    {
        var ops = script.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        ScsiResult? last = null;
        for (var i = 0; i < ops.Length; i++)
        {
            var result = await RunOneAsync(h, ops[i], zoneBlocks, blockSize);
            if (i < ops.Length - 1)
                ZbcKit.AssertGood(result, $"'{ops[i]}' of '{script}'");
            last = result;
        }
        return last ?? throw new ArgumentException("empty script");
    }

    private static long writeIds;

    private static async Task<ScsiResult> RunOneAsync(ScsiHarness h, string op, long zoneBlocks, int blockSize)
    {
        var m = Op().Match(op);
        if (!m.Success)
            throw new ArgumentException($"bad script op '{op}'");
        if (m.Groups["sync"].Success)
            return await h.RunAsync(ZbcKit.SyncCache16);
        if (m.Groups["zop"].Success)
        {
            var action = m.Groups["zop"].Value switch { "o" => ZoneAction.Open, "c" => ZoneAction.Close, "f" => ZoneAction.Finish, _ => ZoneAction.ResetWritePointer };
            var t = m.Groups["target"].Value;
            return t == "A" ? await h.RunAsync(ZbcKit.ZoneOut(action, 0, all: true)) : await h.RunAsync(ZbcKit.ZoneOut(action, long.Parse(t) * zoneBlocks));
        }
        if (m.Groups["endzone"].Success)
        {
            var zone = await ZbcKit.ZoneAsync(h, long.Parse(m.Groups["endzone"].Value) * zoneBlocks);
            var n = (int)(zone.Start + zone.Length - zone.WritePointer);
            return await h.RunAsync(ZbcKit.Write16(zone.WritePointer, n), ZbcKit.Pattern(zone.WritePointer, n, blockSize, Interlocked.Increment(ref writeIds)));
        }
        var start = long.Parse(m.Groups["zone"].Value) * zoneBlocks;
        var blocks = int.Parse(m.Groups["n"].Value);
        long lba;
        if (m.Groups["rel"].Value == "@")
            lba = start + long.Parse(m.Groups["off"].Value);
        else
            lba = (await ZbcKit.ZoneAsync(h, start)).WritePointer + (m.Groups["off"].Success ? long.Parse(m.Groups["off"].Value) : 0);
        return m.Groups["op"].Value == "w"
            ? await h.RunAsync(ZbcKit.Write16(lba, blocks), ZbcKit.Pattern(lba, blocks, blockSize, Interlocked.Increment(ref writeIds)))
            : await h.RunAsync(ZbcKit.Read16(lba, blocks));
    }

    /// <summary>Parses <c>IMP@8</c>, <c>FULL@end</c>, <c>EMPTY@0</c>: a condition and the write pointer's offset in the zone.</summary>
    public static (ZoneCondition Condition, long? Offset) Expectation(string text, long zoneBlocks)
    {
        var parts = text.Split('@');
        var condition = parts[0] switch
        {
            "EMPTY" => ZoneCondition.Empty,
            "IMP" => ZoneCondition.ImplicitlyOpened,
            "EXP" => ZoneCondition.ExplicitlyOpened,
            "CLOSED" => ZoneCondition.Closed,
            "FULL" => ZoneCondition.Full,
            "RO" => ZoneCondition.ReadOnly,
            "OFFLINE" => ZoneCondition.Offline,
            "NOTWP" => ZoneCondition.NotWritePointer,
            _ => throw new ArgumentException($"bad condition '{parts[0]}'"),
        };
        long? offset = parts.Length < 2 ? null : parts[1] == "end" ? zoneBlocks : long.Parse(parts[1]);
        return (condition, offset);
    }
}
