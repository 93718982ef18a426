using System.Collections.Immutable;
using HandlerRuntime.Scsi.Reservations;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Scsi.Commands;

/// <summary>
/// PERSISTENT RESERVE IN and OUT (SPC-4 6.15, 6.16) and RESERVE/RELEASE (SPC-2 7.21-7.24):
/// decoding and parameter data here, the state machine in <see cref="PersistentReserveOut"/>,
/// the per-LU state in <see cref="ReservationManager"/>.
/// </summary>
internal static class ReservationCommands
{
    private const int BasicParameterListLength = 24;

    /// <summary>ALLOW COMMANDS 011b: TEST UNIT READY passes every persistent reservation, MODE SENSE and its kin pass Write Exclusive (see <see cref="PersistentAccess.Read"/>).</summary>
    private const byte AllowCommands = 0b011;

    // ---- PERSISTENT RESERVE IN ----

    /// <summary>READ KEYS (SPC-4 6.15.2): PRGENERATION and every registered key.</summary>
    public static ValueTask ReadKeys(ScsiLun lun, ScsiTask task)
    {
        var state = lun.Reservations.State;
        var keys = state.Registrations;
        var length = 8 + 8 * keys.Length;
        var d = DataIn.Begin(task, length);
        Cdb.Put32(d, 0, state.Generation);
        Cdb.Put32(d, 4, (uint)(8 * keys.Length)); // the whole list, whatever the allocation length
        for (var i = 0; i < keys.Length; i++)
            Cdb.Put64(d, 8 + 8 * i, keys[i].Key);
        return DataIn.End(task, length, Cdb.U16(task.CdbSpan, 7));
    }

    /// <summary>READ RESERVATION (SPC-4 6.15.3): the reservation's key (zero for all registrants types), scope and type.</summary>
    public static ValueTask ReadReservation(ScsiLun lun, ScsiTask task)
    {
        var state = lun.Reservations.State;
        var length = state.Reservation is null ? 8 : 24;
        var d = DataIn.Begin(task, length);
        Cdb.Put32(d, 0, state.Generation);
        if (state.Reservation is { } reservation)
        {
            Cdb.Put32(d, 4, 16);
            Cdb.Put64(d, 8, state.ReservationKey);
            d[21] = (byte)reservation.Type; // SCOPE 0h (LU_SCOPE) in the high nibble
        }
        return DataIn.End(task, length, Cdb.U16(task.CdbSpan, 7));
    }

    /// <summary>REPORT CAPABILITIES (SPC-4 6.15.4): exactly what this device server implements.</summary>
    public static ValueTask ReportCapabilities(ScsiLun lun, ScsiTask task)
    {
        var reservations = lun.Reservations;
        var d = DataIn.Begin(task, 8);
        Cdb.Put16(d, 0, 8);
        d[2] = 0x10 | 0x08 | 0x04; // CRH (5.13.3), SIP_C (iSCSI TransportIDs), ATP_C
        if (reservations.CanPersist)
            d[2] |= 0x01; // PTPL_C
        d[3] = 0x80 | AllowCommands << 4; // TMV
        if (reservations.State.Aptpl)
            d[3] |= 0x01; // PTPL_A
        ushort mask = 0;
        foreach (var type in PersistentReservationTypes.All)
            mask |= type.MaskBit();
        Cdb.Put16(d, 4, mask);
        return DataIn.End(task, 8, Cdb.U16(task.CdbSpan, 7));
    }

    /// <summary>READ FULL STATUS (SPC-4 6.15.5): one descriptor per registration, with holder, type and TransportID.</summary>
    public static ValueTask ReadFullStatus(ScsiLun lun, ScsiTask task)
    {
        var state = lun.Reservations.State;
        var length = 8;
        foreach (var r in state.Registrations)
            length += 24 + TransportId.Of(r.Nexus).Length;
        var d = DataIn.Begin(task, length);
        Cdb.Put32(d, 0, state.Generation);
        Cdb.Put32(d, 4, (uint)(length - 8));
        var at = 8;
        foreach (var r in state.Registrations)
        {
            var desc = d[at..];
            Cdb.Put64(desc, 0, r.Key);
            if (r.Nexus.IsAllTargetPorts)
                desc[12] |= 0x02; // ALL_TG_PT; the relative target port identifier is then not meaningful
            if (state.HoldsReservation(r))
            {
                desc[12] |= 0x01; // R_HOLDER
                desc[13] = (byte)state.Reservation!.Type;
            }
            Cdb.Put16(desc, 18, r.Nexus.RelativeTargetPortId);
            var transportIdLength = TransportId.Of(r.Nexus).Write(desc[24..], r.Nexus.ProtocolId);
            Cdb.Put32(desc, 20, (uint)transportIdLength);
            at += 24 + transportIdLength;
        }
        return DataIn.End(task, length, Cdb.U16(task.CdbSpan, 7));
    }

    // ---- PERSISTENT RESERVE OUT ----

    /// <summary>Every PERSISTENT RESERVE OUT service action: decode, then let the LU's reservations apply it.</summary>
    public static ValueTask PersistentReserveOut(ScsiLun lun, ScsiTask task)
        => lun.Reservations.PersistentReserveOutAsync(lun, task, Decode(lun, task));

    /// <summary>Checks the CDB and parameter list (SPC-4 6.16.1-6.16.4) and turns them into a request.</summary>
    private static ProutRequest Decode(ScsiLun lun, ScsiTask task)
    {
        var cdb = task.CdbSpan;
        var action = (ProutServiceAction)(cdb[1] & 0x1F);
        var type = default(PersistentReservationType);
        if (action is ProutServiceAction.Reserve or ProutServiceAction.Release or ProutServiceAction.Preempt or ProutServiceAction.PreemptAndAbort)
        {
            // SCOPE and TYPE matter for these only; LU_SCOPE is the one scope left in SPC-4.
            if (cdb[2] >> 4 != 0)
                throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2, 7));
            if (!PersistentReservationTypes.IsDefined(cdb[2] & 0x0F))
                throw new ScsiException(Sense.InvalidFieldInCdb.WithFieldPointer(2, 3));
            type = (PersistentReservationType)(cdb[2] & 0x0F);
        }

        var length = Cdb.U32(cdb, 5);
        if (length < BasicParameterListLength)
            throw new ScsiException(Sense.ParameterListLengthError);
        task.RequireDataOut(length);
        ReadOnlySpan<byte> p = task.DataOutBuffer!.Span[..(int)length];
        var request = new ProutRequest(action, Cdb.U64(p, 0), Cdb.U64(p, 8)) { Type = type };
        return action == ProutServiceAction.RegisterAndMove
            ? DecodeRegisterAndMove(lun, request, p)
            : DecodeBasic(lun, request, p);
    }

    /// <summary>The basic parameter list (SPC-4 6.16.3), with SPEC_I_PT's TransportIDs when present.</summary>
    private static ProutRequest DecodeBasic(ScsiLun lun, ProutRequest request, ReadOnlySpan<byte> p)
    {
        var flags = p[20];
        if ((flags & 0xF2) != 0)
            throw InvalidParameter(20, Cdb.HighestBit(flags & 0xF2));
        if (p[21] != 0)
            throw InvalidParameter(21);
        var specifyInitiatorPorts = (flags & 0x08) != 0;
        var isRegister = request.Action is ProutServiceAction.Register or ProutServiceAction.RegisterAndIgnoreExistingKey;
        if (specifyInitiatorPorts && request.Action != ProutServiceAction.Register)
            throw InvalidParameter(20, 3);
        if (!specifyInitiatorPorts && p.Length != BasicParameterListLength)
            throw new ScsiException(Sense.ParameterListLengthError);
        // APTPL and ALL_TG_PT are ignored by the service actions they do not apply to.
        var aptpl = isRegister && (flags & 0x01) != 0;
        if (aptpl && !lun.Reservations.CanPersist)
            throw InvalidParameter(20, 0);
        request = request with { Aptpl = aptpl, AllTargetPorts = isRegister && (flags & 0x04) != 0, SpecifyInitiatorPorts = specifyInitiatorPorts };
        if (!specifyInitiatorPorts)
            return request;

        if (p.Length < BasicParameterListLength + 4)
            throw new ScsiException(Sense.ParameterListLengthError);
        var idsLength = Cdb.U32(p, 24);
        if (idsLength > (uint)(p.Length - 28))
            throw new ScsiException(Sense.ParameterListLengthError);
        var ids = ImmutableArray.CreateBuilder<TransportId>();
        for (var at = 28; at < 28 + (int)idsLength;)
        {
            var n = TransportId.TryParse(p[at..(28 + (int)idsLength)], out var id);
            if (n < 0)
                throw InvalidParameter(at); // malformed, not iSCSI, or cut short by TRANSPORTID PARAMETER DATA LENGTH
            ids.Add(id);
            at += n;
        }
        return request with { SpecifiedInitiators = ids.ToImmutable() };
    }

    /// <summary>The REGISTER AND MOVE parameter list (SPC-4 6.16.4).</summary>
    private static ProutRequest DecodeRegisterAndMove(ScsiLun lun, ProutRequest request, ReadOnlySpan<byte> p)
    {
        if (p[16] != 0)
            throw InvalidParameter(16);
        if ((p[17] & 0xFC) != 0)
            throw InvalidParameter(17);
        var aptpl = (p[17] & 0x01) != 0;
        if (aptpl && !lun.Reservations.CanPersist)
            throw InvalidParameter(17, 0);
        var idLength = Cdb.U32(p, 20);
        if (idLength > (uint)(p.Length - BasicParameterListLength))
            throw new ScsiException(Sense.ParameterListLengthError);
        var n = TransportId.TryParse(p.Slice(BasicParameterListLength, (int)idLength), out var destination);
        if (n < 0 || n != idLength)
            throw InvalidParameter(BasicParameterListLength);
        return request with { Aptpl = aptpl, Unregister = (p[17] & 0x02) != 0, RelativeTargetPortId = Cdb.U16(p, 18), Destination = destination };
    }

    private static ScsiException InvalidParameter(int byteIndex, int bit = -1)
        => new(Sense.InvalidFieldInParameterList.WithFieldPointer(byteIndex, bit, inCdb: false));

    // ---- RESERVE / RELEASE (SPC-2), as SPC-4 5.13.3 lets them live beside persistent reservations ----

    public static ValueTask Reserve(ScsiLun lun, ScsiTask task) => lun.Reservations.ReserveAsync(task);

    public static ValueTask Release(ScsiLun lun, ScsiTask task) => lun.Reservations.ReleaseAsync(task);
}
