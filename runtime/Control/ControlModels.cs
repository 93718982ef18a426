using HandlerRuntime.Fabrics;

namespace HandlerRuntime.Control;

// The control API's JSON shapes, shared by the daemon and the `hrt` client.

public sealed record ErrorDto(string Error);

public sealed record StatusDto(
    string Version, int Pid, long UptimeSeconds, string? ConfigFile, int LogLevel, string LogLevelName, string? LogFile,
    string HandlerPath, string StateDirectory, string ControlSocket, IReadOnlyList<string> Endpoints,
    int Luns, int WaitingLuns, int Sessions, int Plugins, IReadOnlyList<LunStatusDto> Handlers);

public sealed record LunStatusDto(string Lun, System.Text.Json.Nodes.JsonObject Status);

public sealed record HandlerDto(string Subtype, string Plugin, string Version, string Folder, string ConfigHelp);

public sealed record CheckConfigRequest(string Cfgstring);

public sealed record CheckConfigDto(string Cfgstring, bool Valid, string? Reason);

public sealed record LunCreateRequest(string Name, string Cfgstring, long? Size, int? BlockSize, string? Target, int? Lun, bool? WriteCache, bool? ReadOnly, bool? Removable = null);

public sealed record LunResizeRequest(long Size);

public sealed record LunDto(
    string Name, string Cfgstring, long Size, int BlockSize, string? Target, int? Lun, bool WriteCache, bool ReadOnly,
    string State, string? Reason, string? Handler, string? Plugin, string? Serial, string? Wwn, bool Removable = false);

public sealed record TargetDto(string Name, IReadOnlyList<string> AllowedInitiators, bool Chap, bool MutualChap, IReadOnlyList<LunDto> Luns, IReadOnlyList<SessionInfo> Sessions);

public sealed record LsDto(IReadOnlyList<string> Endpoints, IReadOnlyList<TargetDto> Targets);

public sealed record LogLevelRequest(string Level);

public sealed record LogLevelDto(int Level, string Name);

public sealed record ReloadDto(bool Applied, IReadOnlyList<string> Actions, IReadOnlyList<string> Errors);
