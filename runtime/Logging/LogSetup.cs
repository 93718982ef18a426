using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace HandlerRuntime.Logging;

/// <summary>
/// The daemon's logging: console plus a file in the log directory, one level switch
/// for both, both changeable at runtime (a new directory reopens the file there).
/// </summary>
public sealed class LogSetup : IDisposable
{
    public const string FileName = "hrt.log";
    private const string Template = "{Timestamp:yyyy-MM-dd HH:mm:ss.fff} [{Level:u3}] {Message:lj}{NewLine}{Exception}";

    private readonly SwitchableFileSink fileSink = new();

    public LogSetup(int level, bool console = true)
    {
        Switch = new LoggingLevelSwitch(LogLevels.ToSerilog(level));
        var config = new LoggerConfiguration()
            .MinimumLevel.ControlledBy(Switch)
            .Enrich.FromLogContext()
            .WriteTo.Sink(fileSink);
        if (console)
            config = config.WriteTo.Console(outputTemplate: Template, standardErrorFromLevel: LogEventLevel.Verbose);
        Logger = config.CreateLogger();
    }

    public Logger Logger { get; }

    public LoggingLevelSwitch Switch { get; }

    public int Level
    {
        get => LogLevels.FromSerilog(Switch.MinimumLevel);
        set => Switch.MinimumLevel = LogLevels.ToSerilog(value);
    }

    /// <summary>The current log file, or null when none could be opened.</summary>
    public string? LogFile => fileSink.Path;

    /// <summary>Opens <c>hrt.log</c> in <paramref name="directory"/>, closing the previous file. Returns an error sentence, or null.</summary>
    public string? SetDirectory(string directory) => fileSink.Open(System.IO.Path.Combine(directory, FileName), Template);

    public void Dispose()
    {
        Logger.Dispose();
        fileSink.Dispose();
    }

    /// <summary>Forwards events to a file logger that can be replaced while running.</summary>
    private sealed class SwitchableFileSink : ILogEventSink, IDisposable
    {
        private Logger? current;

        public string? Path { get; private set; }

        public string? Open(string path, string template)
        {
            if (path == Path && current is not null)
                return null;
            try
            {
                Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
                using (File.Open(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return $"cannot write {path}: {e.Message}";
            }
            var next = new LoggerConfiguration().MinimumLevel.Verbose()
                .WriteTo.File(path, outputTemplate: template, shared: true, flushToDiskInterval: TimeSpan.FromSeconds(1))
                .CreateLogger();
            var previous = Interlocked.Exchange(ref current, next);
            Path = path;
            previous?.Dispose();
            return null;
        }

        public void Emit(LogEvent logEvent) => Volatile.Read(ref current)?.Write(logEvent);

        public void Dispose() => Interlocked.Exchange(ref current, null)?.Dispose();
    }
}
