using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using HandlerRuntime.Handlers.Rbd.Native;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Handlers.Rbd;

/// <summary>
/// Which bytes of an image are allocated, from rbd_diff_iterate2 with no start snapshot (everything
/// written since creation, parents included) and whole_object off, so extents are the objects' own
/// allocated extents, not whole 4 MiB objects.
/// </summary>
internal static unsafe class AllocationMap
{
    /// <summary>Collects the first run of the range: allocated or not, and how long.</summary>
    private sealed class Walk(long start)
    {
        public readonly long Start = start;
        public long MappedEnd = -1; // end of the mapped run starting at Start, once one was seen
        public long FirstExtent = -1; // start of the first allocated extent after Start, when Start is unmapped
    }

    /// <summary>The state of the run at <paramref name="offset"/> (at most <paramref name="length"/> bytes). Blocks: call on a pool thread.</summary>
    public static (bool Mapped, long Length) Extent(ImageHandle image, long offset, long length)
    {
        var walk = new Walk(offset);
        var handle = GCHandle.Alloc(walk);
        try
        {
            var r = Librbd.rbd_diff_iterate2(image, 0, (ulong)offset, (ulong)length, includeParent: 1, wholeObject: 0, &OnExtent, GCHandle.ToIntPtr(handle));
            if (r < 0 && r != -Errno.ECANCELED)
                throw new ScsiException(RbdSense.For(r, write: false), $"rbd_diff_iterate2 failed: {Errno.Describe(r)}");
        }
        finally
        {
            handle.Free();
        }
        if (walk.MappedEnd > offset)
            return (true, walk.MappedEnd - offset);
        return (false, walk.FirstExtent > offset ? walk.FirstExtent - offset : length);
    }

    [UnmanagedCallersOnly]
    private static int OnExtent(ulong extentOffset, nuint extentLength, int exists, nint arg)
    {
        var walk = (Walk)GCHandle.FromIntPtr(arg).Target!;
        if (exists == 0)
            return 0;
        var start = (long)extentOffset;
        var end = start + (long)extentLength;
        if (walk.MappedEnd < 0)
        {
            if (start > walk.Start)
            {
                walk.FirstExtent = start; // the range begins unmapped, up to here
                return -Errno.ECANCELED;
            }
            walk.MappedEnd = end;
            return 0;
        }
        if (start > walk.MappedEnd)
            return -Errno.ECANCELED; // a hole ends the mapped run
        walk.MappedEnd = Math.Max(walk.MappedEnd, end);
        return 0;
    }
}
