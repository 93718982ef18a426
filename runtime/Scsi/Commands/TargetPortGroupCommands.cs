using HandlerRuntime.Scsi.Alua;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

/// <summary>REPORT TARGET PORT GROUPS and SET TARGET PORT GROUPS (SPC-4 6.31, 6.42).</summary>
internal static class TargetPortGroupCommands
{
    // Supported states: T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP (no offline, no LBA dependent).
    private const byte SupportedStates = 0x80 | 0x08 | 0x04 | 0x02 | 0x01;

    public static ValueTask ReportTargetPortGroups(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        var extended = (cdb[1] >> 5) == 0x01;
        if ((cdb[1] >> 5) > 1)
            throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(1, 7));
        var port = task.Nexus.TargetPort;
        var d = DataIn.Begin(task, 32);
        var n = extended ? 8 : 4;
        if (extended)
        {
            d[4] = 0x10;  // FORMAT TYPE 001b: extended header
            d[5] = 10;    // IMPLICIT TRANSITION TIME, seconds
        }
        d[n] = (byte)(0x80 | (byte)lun.Alua.State); // PREF: the one group is the preferred one
        d[n + 1] = SupportedStates;
        Cdb.Put16(d, n + 2, port.PortGroup);
        d[n + 5] = lun.Alua.StatusCode;
        d[n + 7] = 1; // one target port in the group
        Cdb.Put16(d, n + 10, port.RelativePortId);
        n += 12;
        Cdb.Put32(d, 0, (uint)(n - 4));
        return DataIn.End(task, n, Cdb.U32(cdb, 6));
    }

    public static ValueTask SetTargetPortGroups(ScsiLun lun, ScsiTask task)
    {
        var length = (int)Cdb.U32(task.CdbSpan, 6);
        if (length == 0)
            return default;
        if (length < 4 || (length - 4) % 4 != 0)
            throw new ScsiException(Sense.ParameterListLengthError);
        task.RequireDataOut(length);
        var p = task.DataOutBuffer!.Span[..length];
        AsymmetricAccessState? wanted = null;
        for (var at = 4; at < length; at += 4)
        {
            var state = (AsymmetricAccessState)(p[at] & 0x0F);
            if (state is not (AsymmetricAccessState.ActiveOptimized or AsymmetricAccessState.ActiveNonOptimized or AsymmetricAccessState.Standby or AsymmetricAccessState.Unavailable))
                throw new ScsiException(Sense.InvalidFieldInParameterList.WithFieldPointer(at, 3, inCdb: false));
            if (Cdb.U16(p, at + 2) != task.Nexus.TargetPort.PortGroup)
                throw new ScsiException(Sense.InvalidFieldInParameterList.WithFieldPointer(at + 2, inCdb: false));
            wanted = state;
        }
        if (wanted is { } s)
            lun.Alua.Change(s, explicitly: true, task.Nexus, lun.UnitAttentions);
        return default;
    }
}
