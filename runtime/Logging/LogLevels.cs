using Serilog.Events;

namespace HandlerRuntime.Logging;

/// <summary>
/// tcmu-runner's log levels: 0 CRIT, 1 ERROR, 2 WARNING, 3 INFO, 4 DEBUG, 5 DEBUG SCSI CMD
/// (every CDB and its outcome), accepted by number or name wherever a level is given.
/// </summary>
public static class LogLevels
{
    private static readonly (int Number, string Name, LogEventLevel Serilog, string[] Aliases)[] Table =
    [
        (0, "crit", LogEventLevel.Fatal, ["critical", "fatal"]),
        (1, "error", LogEventLevel.Error, ["err"]),
        (2, "warning", LogEventLevel.Warning, ["warn"]),
        (3, "info", LogEventLevel.Information, ["information"]),
        (4, "debug", LogEventLevel.Debug, []),
        (5, "debug_scsi_cmd", LogEventLevel.Verbose, ["scsi", "debug-scsi-cmd", "scsi_cmd", "verbose"]),
    ];

    public const int Default = 3;

    public const string Accepted = "0-5 or crit, error, warning, info, debug, debug_scsi_cmd";

    public static bool TryParse(string? text, out int level)
    {
        level = Default;
        if (string.IsNullOrWhiteSpace(text))
            return false;
        text = text.Trim();
        if (int.TryParse(text, out var n) && n is >= 0 and <= 5)
        {
            level = n;
            return true;
        }
        foreach (var row in Table)
        {
            if (text.Equals(row.Name, StringComparison.OrdinalIgnoreCase) || row.Aliases.Contains(text, StringComparer.OrdinalIgnoreCase))
            {
                level = row.Number;
                return true;
            }
        }
        return false;
    }

    public static int Parse(string text)
        => TryParse(text, out var level) ? level : throw new FormatException($"'{text}' is not a log level; use {Accepted}.");

    public static string Name(int level) => Table[level].Name;

    public static LogEventLevel ToSerilog(int level) => Table[level].Serilog;

    public static int FromSerilog(LogEventLevel level) => Array.FindIndex(Table, r => r.Serilog == level);
}
