using HandlerRuntime.Fabrics.Tcmu;

namespace HandlerRuntime.Tests.Fabrics;

/// <summary>Decoding what target_core_user sends over netlink and names in configfs.</summary>
public sealed class TcmuNetlinkTests
{
    [Fact]
    public void A_reconfig_event_with_a_u64_size_after_its_pad_attribute_decodes()
    {
        var sent = new TcmuDeviceEvent(TcmuCommandKind.ReconfigDevice, "tcm-user/1/disk0/file//var/lib/disk0.img", 3, 17, DevSize: 134217728);
        var bytes = TcmuNetlink.Encode(sent, 0x20);
        var messages = 0;
        foreach (var m in NetlinkMessage.Split(bytes))
        {
            messages++;
            Assert.Equal(0x20, m.Type);
            Assert.Equal(sent, TcmuNetlink.Parse(m));
        }
        Assert.Equal(1, messages);
    }

    [Fact]
    public void An_added_event_names_its_uio_device_and_the_reply_pairs_with_it()
    {
        var e = new TcmuDeviceEvent(TcmuCommandKind.AddedDevice, "tcm-user/2/r/ram/@", 0, 5);
        foreach (var m in NetlinkMessage.Split(TcmuNetlink.Encode(e, 0x21)))
            Assert.Equal(e, TcmuNetlink.Parse(m));
        Assert.Equal(TcmuCommandKind.AddedDeviceDone, e.ReplyKind);
        Assert.Equal(TcmuCommandKind.RemovedDeviceDone, (e with { Kind = TcmuCommandKind.RemovedDevice }).ReplyKind);
        Assert.Equal(TcmuCommandKind.ReconfigDeviceDone, (e with { Kind = TcmuCommandKind.ReconfigDevice }).ReplyKind);
    }

    [Fact]
    public void A_message_missing_the_device_attribute_is_not_an_event()
    {
        var buffer = new byte[64];
        var w = new NetlinkMessageWriter(buffer, 0x20, 0, 1, (byte)TcmuCommandKind.AddedDevice, 2);
        w.U32(TcmuNetlink.AttrMinor, 1);
        var message = w.Finish().ToArray();
        foreach (var m in NetlinkMessage.Split(message))
            Assert.Null(TcmuNetlink.Parse(m));
    }

    [Fact]
    public void A_truncated_datagram_yields_no_message()
    {
        var bytes = TcmuNetlink.Encode(new TcmuDeviceEvent(TcmuCommandKind.AddedDevice, "tcm-user/1/a/file//x", 0, 1), 0x20);
        var count = 0;
        foreach (var _ in NetlinkMessage.Split(bytes.AsSpan(0, bytes.Length - 4)))
            count++;
        Assert.Equal(0, count);
    }

    [Theory]
    [InlineData("tcm-user/1/test/file//tmp/x", 1, "test", "file//tmp/x", "file")]
    [InlineData("tcm-user/12/z/zbc/model-HM/zsize-4@/var/z.raw\n", 12, "z", "zbc/model-HM/zsize-4@/var/z.raw", "zbc")]
    [InlineData("tcm-user/1/plain", 1, "plain", null, null)]
    [InlineData("tcm-user/1/odd/nosubtype", 1, "odd", "nosubtype", null)]
    public void Uio_names_give_the_device_and_its_cfgstring(string uio, int hba, string name, string? cfgstring, string? subtype)
    {
        var n = TcmuDeviceName.Parse(uio)!;
        Assert.Equal((hba, name, cfgstring, subtype), (n.Hba, n.Name, n.Cfgstring, n.Subtype));
        Assert.Equal($"user_{hba}/{name}", n.ConfigFsName);
    }

    [Theory]
    [InlineData("uio_pci_generic")]
    [InlineData("tcm-user/x/name/file//a")]
    [InlineData("tcm-user/1/")]
    public void Other_uio_devices_are_not_tcmu_devices(string uio) => Assert.Null(TcmuDeviceName.Parse(uio));

    [Fact]
    public void The_size_is_read_from_the_info_file_as_tcmu_runner_reads_it()
    {
        const string info = "Status: ACTIVATED  Max Queue Depth: 0  SectorSize: 512  HwMaxSectors: 128\n        Config: file//tmp/x Size: 67108864 MaxDataAreaMB: 1024 DataPagesPerBlk: 1 CmdRingSizeMB: 8\n";
        Assert.Equal(67108864, TcmuConfigFs.ParseInfoSize(info));
        Assert.Null(TcmuConfigFs.ParseInfoSize("Status: ACTIVATED"));
    }

    [Theory]
    [InlineData("disk0", "disk0")]
    [InlineData("my disk", "my_disk")]
    [InlineData("_x", "d_x")]
    public void Lun_names_follow_the_configfs_name(string configfs, string lun)
        => Assert.Equal(lun, TcmuDevice.LunNameFor(new TcmuDeviceName(1, configfs, "ram/@")));
}
