using HandlerRuntime.Qcow.CrashDriver;
using Xunit.Sdk;

namespace HandlerRuntime.Qcow.Tests;

/// <summary>
/// Checks what a crashed image holds against the workload that ran: every sector must hold
/// what the last durable step touching it left (or the initial content if none did), or
/// what a later step (begun, not yet durable) put there. Durable: every step before the
/// last acknowledged flush, and every acknowledged FUA write.
/// </summary>
internal static class CrashVerifier
{
    public static void Verify(byte[] initial, byte[] after, CrashWorkload workload, int lastBegun, IReadOnlySet<int> acknowledged, string trial)
    {
        var steps = new List<Step>();
        for (var i = 0; i <= lastBegun; i++)
            steps.Add(workload.Next());
        var lastFlush = steps.Where(s => s.Kind == StepKind.Flush && acknowledged.Contains(s.Index)).Select(s => s.Index).DefaultIfEmpty(-1).Max();
        bool Durable(Step s) => s.Index < lastFlush || (s.Kind == StepKind.FuaWrite && acknowledged.Contains(s.Index));

        var touching = new Dictionary<long, List<Step>>();
        foreach (var s in steps.Where(s => s.TouchesData))
            for (var lba = s.Offset / CrashWorkload.Sector; lba < (s.Offset + s.Length) / CrashWorkload.Sector; lba++)
                (touching.TryGetValue(lba, out var list) ? list : touching[lba] = []).Add(s);

        var expected = new byte[CrashWorkload.Sector];
        var sectors = initial.Length / CrashWorkload.Sector;
        for (long lba = 0; lba < sectors; lba++)
        {
            var actual = after.AsSpan((int)(lba * CrashWorkload.Sector), CrashWorkload.Sector);
            if (!touching.TryGetValue(lba, out var list))
            {
                if (!actual.SequenceEqual(initial.AsSpan((int)(lba * CrashWorkload.Sector), CrashWorkload.Sector)))
                    throw new XunitException($"{trial}: sector {lba}, which no step touched, changed.");
                continue;
            }
            var lastDurable = list.FindLastIndex(Durable);
            var allowed = new List<string>();
            for (var k = Math.Max(lastDurable, -1); k < list.Count; k++)
            {
                if (k < 0)
                {
                    if (actual.SequenceEqual(initial.AsSpan((int)(lba * CrashWorkload.Sector), CrashWorkload.Sector)))
                        goto next;
                    allowed.Add("initial");
                    continue;
                }
                var s = list[k];
                if (s.Kind is StepKind.Write or StepKind.FuaWrite)
                    CrashWorkload.FillSector(expected, s.Index, lba);
                else
                    Array.Clear(expected);
                if (actual.SequenceEqual(expected))
                    goto next;
                allowed.Add($"{s.Kind} {s.Index}{(Durable(s) ? " (durable)" : "")}");
            }
            var writer = BitConverter.ToInt32(actual) - 1;
            throw new XunitException($"{trial}: sector {lba} holds {(actual.IndexOfAnyExcept((byte)0) < 0 ? "zeros" : $"data tagged step {writer}")}, " +
                $"but only {string.Join(", ", allowed)} may be there (last acknowledged flush: {lastFlush}, last step begun: {lastBegun}).");
        next:;
        }
    }

    /// <summary>qemu-img check after a crash: consistent (0) or leaks only (3), never corruption.</summary>
    public static async Task<int> AssertNoCorruptionAsync(string image, string trial)
    {
        var r = await Qemu.CheckAsync(image);
        if (r.ExitCode is not (0 or 3))
            throw new XunitException($"{trial}: qemu-img check reports corruption: {r}");
        return r.ExitCode;
    }
}
