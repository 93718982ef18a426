using System.Runtime.InteropServices;

namespace HandlerRuntime.Fabrics.Tcmu;

/// <summary>
/// The Linux calls the TCMU fabric makes itself: the UIO device (open, read and write of its
/// 4-byte event counter, mmap of the ring), the generic netlink socket, eventfd and poll for the
/// event loop. .NET's own wrappers do not fit: a char device has no length for MemoryMappedFile,
/// and System.Net.Sockets has no AF_NETLINK endpoint.
/// </summary>
internal static unsafe partial class Libc
{
    public const int ORdWr = 0x2;
    public const int ONonBlock = 0x800;
    public const int OCloExec = 0x80000;

    public const int ProtRead = 0x1;
    public const int ProtWrite = 0x2;
    public const int MapShared = 0x01;
    public static readonly nint MapFailed = -1;

    public const int AfNetlink = 16;
    public const int SockRaw = 3;
    public const int SockNonBlock = 0x800;
    public const int SockCloExec = 0x80000;
    public const int NetlinkGeneric = 16;
    public const int SolNetlink = 270;
    public const int NetlinkAddMembership = 1;
    public const int SolSocket = 1;
    public const int SoRcvBuf = 8;

    public const int EfdCloExec = 0x80000;
    public const int EfdNonBlock = 0x800;

    public const short PollIn = 0x1;
    public const short PollErr = 0x8;
    public const short PollHup = 0x10;
    public const short PollNval = 0x20;

    public const int EINTR = 4;
    public const int EAGAIN = 11;
    public const int ENOENT = 2;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int EINVAL = 22;
    public const int ENODEV = 19;
    public const int EOPNOTSUPP = 95;

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short REvents;
    }

    /// <summary>struct sockaddr_nl (12 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct SockAddrNetlink
    {
        public ushort Family;
        public ushort Pad;
        public uint Pid;
        public uint Groups;
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, void* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, void* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint count, int timeoutMilliseconds);

    [LibraryImport("libc", EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initial, int flags);

    [LibraryImport("libc", EntryPoint = "socket", SetLastError = true)]
    public static partial int Socket(int domain, int type, int protocol);

    [LibraryImport("libc", EntryPoint = "bind", SetLastError = true)]
    public static partial int Bind(int fd, SockAddrNetlink* address, uint length);

    [LibraryImport("libc", EntryPoint = "setsockopt", SetLastError = true)]
    public static partial int SetSockOpt(int fd, int level, int name, void* value, uint length);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    public static partial nint Send(int fd, void* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    public static partial nint Recv(int fd, void* buffer, nuint length, int flags);

    public static int Errno => Marshal.GetLastPInvokeError();

    /// <summary>strerror for messages users read.</summary>
    public static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";
}
