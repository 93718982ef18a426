namespace HandlerRuntime.Fabrics.Tcmu;

/// <summary>
/// An open <c>/dev/uio&lt;minor&gt;</c> of a TCMU device and its mapping (mailbox, command ring,
/// data area). The fd is the device's event channel: a read of 4 bytes clears the kernel's
/// "new entries" event (POLLIN), a write of 4 bytes makes the kernel collect completions.
/// Only one process may have it open (a second open fails with EBUSY).
/// </summary>
internal sealed unsafe class UioMapping : IDisposable
{
    private nint address;

    private UioMapping(int minor, int fd, nint address, long size)
    {
        Minor = minor;
        Fd = fd;
        this.address = address;
        Size = size;
    }

    public int Minor { get; }

    public int Fd { get; private set; }

    public long Size { get; }

    public byte* Base => (byte*)address;

    public string DevicePath => $"/dev/uio{Minor}";

    /// <summary>The command ring of this mapping (checks the mailbox).</summary>
    public CommandRing CreateRing() => new(Base, Size);

    /// <summary>Opens and maps the device; throws <see cref="IOException"/> with the reason (EBUSY: another daemon has it).</summary>
    public static UioMapping Open(int minor)
    {
        var size = TcmuConfigFs.ReadMapSize(minor) ?? throw new IOException($"{TcmuConfigFs.UioClass}/uio{minor}/maps/map0/size cannot be read");
        var path = $"/dev/uio{minor}";
        var fd = Libc.Open(path, Libc.ORdWr | Libc.ONonBlock | Libc.OCloExec);
        if (fd < 0)
        {
            var e = Libc.Errno;
            throw new IOException(e == Libc.EBUSY
                ? $"{path} is open in another process (tcmu-runner or another TCMU daemon serves it)"
                : $"{path} cannot be opened: {Libc.Describe(e)}") { HResult = e };
        }
        // The length must be map0's size exactly, or mmap fails with EINVAL.
        var address = Libc.Mmap(0, (nuint)size, Libc.ProtRead | Libc.ProtWrite, Libc.MapShared, fd, 0);
        if (address == Libc.MapFailed)
        {
            var e = Libc.Errno;
            Libc.Close(fd);
            throw new IOException($"{path}: mmap of {size} bytes failed: {Libc.Describe(e)}") { HResult = e };
        }
        return new UioMapping(minor, fd, address, size);
    }

    /// <summary>Reads the event counter (clearing POLLIN); false when no event was pending.</summary>
    public bool ClearEvent()
    {
        uint count;
        var n = Libc.Read(Fd, &count, 4);
        return n == 4;
    }

    /// <summary>Tells the kernel to collect the completions written so far (it runs synchronously in this call).</summary>
    public void NotifyCompletions()
    {
        uint one = 1;
        while (Libc.Write(Fd, &one, 4) < 0 && Libc.Errno == Libc.EINTR)
        {
        }
    }

    public void Dispose()
    {
        if (address != 0)
            Libc.Munmap(address, (nuint)Size);
        address = 0;
        if (Fd >= 0)
            Libc.Close(Fd);
        Fd = -1;
    }
}
