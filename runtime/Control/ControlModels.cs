using HandlerRuntime.Fabrics;

namespace HandlerRuntime.Control;

// The control API's JSON shapes, shared by the daemon and the `hrt` client.

public sealed record ErrorDto(string Error);

public sealed record StatusDto(
    string Version, int Pid, long UptimeSeconds, string? ConfigFile, int LogLevel, string LogLevelName, string? LogFile,
    string HandlerPath, string StateDirectory, string ControlSocket, IReadOnlyList<string> Endpoints,
    int Luns, int WaitingLuns, int Sessions, int Plugins, IReadOnlyList<LunStatusDto> Handlers, GcDto? Gc = null, int Connections = 0);

/// <summary>The daemon's garbage collector since start: bytes allocated and collections per generation (bench/run.sh reads them around a run).</summary>
public sealed record GcDto(long AllocatedBytes, int Gen0Collections, int Gen1Collections, int Gen2Collections, double PauseMilliseconds);

public sealed record LunStatusDto(string Lun, System.Text.Json.Nodes.JsonObject Status);

public sealed record HandlerDto(string Subtype, string Plugin, string Version, string Folder, string ConfigHelp)
{
    /// <summary>The handler's own verbs (`hrt &lt;subtype&gt; &lt;verb&gt;`), if it has any.</summary>
    public IReadOnlyList<Sdk.HandlerVerb> Verbs { get; init; } = [];
}

public sealed record HandlerCommandRequest(string Verb, IReadOnlyList<string>? Arguments);

/// <param name="Reach">Also ask the handler whether the store answers (handlers with <see cref="Sdk.IReachabilityCheck"/>).</param>
public sealed record CheckConfigRequest(string Cfgstring, bool Reach = false);

public sealed record CheckConfigDto(string Cfgstring, bool Valid, string? Reason);

public sealed record LunCreateRequest(string Name, string Cfgstring, long? Size, int? BlockSize, string? Target, int? Lun, bool? WriteCache, bool? ReadOnly, bool? Removable = null,
    int? PhysicalBlockSize = null);

public sealed record LunResizeRequest(long Size);

public sealed record LunAluaRequest(string State);

public sealed record LunDto(
    string Name, string Cfgstring, long Size, int BlockSize, string? Target, int? Lun, bool WriteCache, bool ReadOnly,
    string State, string? Reason, string? Handler, string? Plugin, string? Serial, string? Wwn, bool Removable = false)
{
    /// <summary>The physical block size initiators are told (READ CAPACITY(16)); the logical one when they are the same.</summary>
    public int PhysicalBlockSize { get; init; }

    /// <summary>The ALUA state of a served LUN (active-optimized, active-non-optimized, standby, unavailable, transitioning).</summary>
    public string? Alua { get; init; }

    /// <summary>The reservations of a served LUN (null while it waits).</summary>
    public ReservationsDto? Reservations { get; init; }
}

/// <summary>A LUN's persistent reservations as PERSISTENT RESERVE IN reports them, plus any SPC-2 (RESERVE) holder.</summary>
/// <param name="Generation">PRGENERATION.</param>
/// <param name="Aptpl">Whether the state persists through restarts.</param>
/// <param name="Registrations">Every registration.</param>
/// <param name="Type">The persistent reservation's type, or null when there is none.</param>
/// <param name="Spc2Holder">The initiator port holding an SPC-2 reservation, or null.</param>
public sealed record ReservationsDto(uint Generation, bool Aptpl, IReadOnlyList<RegistrationDto> Registrations, string? Type, string? Spc2Holder);

/// <param name="Initiator">The initiator port (or device, when registered by name only).</param>
/// <param name="TargetPort">The target port, or "all" (ALL_TG_PT).</param>
/// <param name="Key">The reservation key, hexadecimal.</param>
/// <param name="Holder">Whether it holds the persistent reservation.</param>
public sealed record RegistrationDto(string Initiator, string TargetPort, string Key, bool Holder);

public sealed record TargetDto(string Name, IReadOnlyList<string> AllowedInitiators, bool Chap, bool MutualChap, IReadOnlyList<LunDto> Luns, IReadOnlyList<SessionInfo> Sessions);

public sealed record LsDto(IReadOnlyList<string> Endpoints, IReadOnlyList<TargetDto> Targets);

public sealed record LogLevelRequest(string Level);

public sealed record LogLevelDto(int Level, string Name);

public sealed record ReloadDto(bool Applied, IReadOnlyList<string> Actions, IReadOnlyList<string> Errors);

/// <summary>Statistics of every LUN at one moment; <c>At</c> is a monotonic clock in seconds.</summary>
public sealed record StatsDto(double At, IReadOnlyList<LunStatsDto> Luns, IReadOnlyList<double> LatencyBucketSeconds);

public sealed record LunStatsDto(string Name, KindStatsDto Read, KindStatsDto Write, KindStatsDto Other, long InFlight,
    IReadOnlyDictionary<string, long> CheckConditions, long OtherStatuses);

/// <summary>Commands of one kind since the LUN was created; <c>Buckets</c> counts them per latency bucket (not cumulative).</summary>
public sealed record KindStatsDto(long Count, long Bytes, double LatencySeconds, IReadOnlyList<long> Buckets);
