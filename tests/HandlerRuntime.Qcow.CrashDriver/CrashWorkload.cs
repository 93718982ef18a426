using System.Buffers.Binary;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Qcow.CrashDriver;

/// <summary>What one workload step does.</summary>
public enum StepKind
{
    Write,
    FuaWrite,
    Unmap,
    WriteZeroes,
    Flush,
}

/// <summary>One step: a byte range (block aligned) and what happens to it.</summary>
public readonly record struct Step(int Index, StepKind Kind, long Offset, int Length)
{
    public bool TouchesData => Kind != StepKind.Flush;

    /// <summary>Whether this step's data is durable once it is acknowledged on its own (FUA).</summary>
    public bool DurableOnAck => Kind is StepKind.FuaWrite or StepKind.Flush;
}

/// <summary>
/// A deterministic stream of steps from a seed, shared by the driver (which runs it) and
/// the tests (which regenerate it to know what every block may hold after a crash).
/// Every 512-byte sector a write puts down starts with the step index and the sector
/// number, so any sector found later names the step that wrote it.
/// </summary>
public sealed class CrashWorkload(int seed, long size, int maxLength, bool withUnmap)
{
    public const int Sector = 512;

    private readonly Random random = new(seed);
    private int next;

    public long Size => size;

    public Step Next()
    {
        var index = next++;
        var roll = random.Next(100);
        var kind = roll switch
        {
            < 55 => StepKind.Write,
            < 65 => StepKind.FuaWrite,
            < 75 => withUnmap ? StepKind.Unmap : StepKind.Write,
            < 85 => StepKind.WriteZeroes,
            _ => StepKind.Flush,
        };
        if (kind == StepKind.Flush)
            return new Step(index, kind, 0, 0);
        var sectors = 1 + random.Next(maxLength / Sector);
        // Half of the steps land in a hot area so that clusters get rewritten, copied and freed.
        var area = random.Next(2) == 0 ? Math.Min(size, 8L * maxLength) : size;
        var offset = random.NextInt64(0, (area - (long)sectors * Sector) / Sector + 1) * Sector;
        return new Step(index, kind, offset, sectors * Sector);
    }

    /// <summary>Runs one step on the device; it is durable when this returns if <see cref="Step.DurableOnAck"/>.</summary>
    public static ValueTask ApplyAsync(IBlockDevice device, Step step) => step.Kind switch
    {
        StepKind.Write or StepKind.FuaWrite => device.WriteAsync(step.Offset, Data(step), step.Kind == StepKind.FuaWrite ? WriteFlags.Fua : WriteFlags.None, CancellationToken.None),
        StepKind.Unmap => device.UnmapAsync(step.Offset, step.Length, CancellationToken.None),
        StepKind.WriteZeroes => device.WriteZeroesAsync(step.Offset, step.Length, step.Index % 2 == 0 ? ZeroFlags.MayUnmap : ZeroFlags.None, CancellationToken.None),
        _ => device.FlushAsync(CancellationToken.None),
    };

    /// <summary>The bytes a write step puts down.</summary>
    public static byte[] Data(Step step)
    {
        var data = new byte[step.Length];
        for (var at = 0; at < data.Length; at += Sector)
            FillSector(data.AsSpan(at, Sector), step.Index, (step.Offset + at) / Sector);
        return data;
    }

    public static void FillSector(Span<byte> sector, int stepIndex, long lba)
    {
        BinaryPrimitives.WriteInt32LittleEndian(sector, stepIndex + 1);
        BinaryPrimitives.WriteInt64LittleEndian(sector[4..], lba);
        var x = (uint)(stepIndex * 2654435761u) ^ (uint)lba;
        for (var i = 12; i < sector.Length; i++)
        {
            x = x * 1664525 + 1013904223;
            sector[i] = (byte)(x >> 24);
        }
    }
}
