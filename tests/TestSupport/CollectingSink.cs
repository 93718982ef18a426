using Serilog.Core;
using Serilog.Events;

namespace HandlerRuntime.TestSupport;

/// <summary>A Serilog sink that keeps rendered messages, for asserting on in-process logs.</summary>
public sealed class CollectingSink : ILogEventSink
{
    // Strings unquoted, as the daemon's own console and file output render them.
    private static readonly Serilog.Formatting.Display.MessageTemplateTextFormatter Format = new("[{Level}] {Message:lj} {Exception}");
    private readonly List<string> lines = [];

    public void Emit(LogEvent logEvent)
    {
        using var w = new StringWriter();
        Format.Format(logEvent, w);
        lock (lines) lines.Add(w.ToString().TrimEnd());
    }

    public string Text { get { lock (lines) return string.Join('\n', lines); } }

    public Serilog.ILogger Logger(LogEventLevel level = LogEventLevel.Verbose)
        => new Serilog.LoggerConfiguration().MinimumLevel.Is(level).WriteTo.Sink(this).CreateLogger();
}
