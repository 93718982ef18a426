using System.Net.Sockets;
using System.Runtime.InteropServices;
using HandlerRuntime.Luns;
using HandlerRuntime.Scsi.Alua;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace HandlerRuntime.Control;

/// <summary>
/// The daemon's HTTP+JSON control API on a Unix domain socket (mode 0600), served by
/// Kestrel. Every failure is a 4xx with one sentence in <c>{"error": ...}</c>.
/// </summary>
public sealed partial class ControlServer : IAsyncDisposable
{
    private readonly WebApplication app;

    private ControlServer(WebApplication app, string socketPath)
    {
        this.app = app;
        SocketPath = socketPath;
    }

    public string SocketPath { get; }

    public static async Task<ControlServer> StartAsync(string socketPath, Daemon daemon)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(socketPath))!;
        Directory.CreateDirectory(dir);
        if (File.Exists(socketPath))
        {
            if (await IsListeningAsync(socketPath))
                throw new InvalidOperationException($"Another hrt daemon is already serving {socketPath}; stop it or give this one another --control socket.");
            File.Delete(socketPath); // stale, from a daemon that did not exit cleanly
        }

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "hrt" });
        builder.WebHost.UseKestrelCore().ConfigureKestrel(o => o.ListenUnixSocket(socketPath));
        builder.Services.AddRoutingCore();
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.WriteIndented = false);
        builder.Logging.ClearProviders();
        var app = builder.Build();
        Map(app, daemon);

        // The socket must never exist with looser permissions, even briefly.
        var old = umask(0x3F);
        try
        {
            await app.StartAsync();
        }
        finally
        {
            umask(old);
        }
        File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return new ControlServer(app, socketPath);
    }

    private static void Map(WebApplication app, Daemon d)
    {
        app.MapGet("/v1/status", () => Results.Ok(d.Status()));
        app.MapGet("/v1/handlers", () => Results.Ok(d.Handlers()));
        app.MapPost("/v1/handlers/{subtype}/commands", async (string subtype, HandlerCommandRequest r, CancellationToken ct) =>
            Results.Ok(await d.RunHandlerCommandAsync(subtype, r.Verb ?? "", r.Arguments ?? [], ct)));
        app.MapPost("/v1/check-config", async (CheckConfigRequest r, CancellationToken ct) =>
        {
            var check = d.Luns.CheckConfig(r.Cfgstring ?? "");
            if (check.IsValid && r.Reach)
                check = await d.Luns.CheckReachableAsync(r.Cfgstring ?? "", ct);
            return Results.Ok(new CheckConfigDto(r.Cfgstring ?? "", check.IsValid, check.Reason));
        });
        app.MapGet("/v1/luns", () => Results.Ok(d.LunList()));
        app.MapPost("/v1/luns", async (LunCreateRequest r, CancellationToken ct) =>
        {
            var def = new LunDefinition(r.Name ?? "", r.Cfgstring ?? "")
            {
                Size = r.Size ?? 0,
                BlockSize = r.BlockSize ?? 0,
                Target = string.IsNullOrEmpty(r.Target) ? null : r.Target,
                Lun = r.Lun,
                WriteCache = r.WriteCache ?? true,
                ReadOnly = r.ReadOnly ?? false,
                Removable = r.Removable ?? false,
                PhysicalBlockSize = r.PhysicalBlockSize ?? 0,
            };
            var entry = await d.ChangeLunsAsync(() => d.Luns.CreateAsync(def, ct));
            return Results.Created($"/v1/luns/{entry.Name}", Daemon.ToDto(entry));
        });
        app.MapDelete("/v1/luns/{name}", async (string name, CancellationToken ct) =>
        {
            await d.ChangeLunsAsync(async () => { await d.Luns.DeleteAsync(name, ct); return true; });
            return Results.NoContent();
        });
        app.MapPost("/v1/luns/{name}/resize", async (string name, LunResizeRequest r, CancellationToken ct) =>
            Results.Ok(Daemon.ToDto(await d.ChangeLunsAsync(() => d.Luns.ResizeAsync(name, r.Size, ct)))));
        app.MapPost("/v1/luns/{name}/alua", (string name, LunAluaRequest r) =>
        {
            var entry = d.Luns.Get(name);
            var state = AluaStates.Parse(r.State ?? "");
            entry.Lun.SetAccessState(state);
            d.Log.Information("LUN {Lun}: ALUA state set to {State} by an operator", name, AluaStates.Name(state));
            return Results.Ok(Daemon.ToDto(entry));
        });
        app.MapGet("/v1/ls", () => Results.Ok(d.Ls()));
        app.MapGet("/v1/stats", () => Results.Ok(d.Stats()));
        app.MapGet("/v1/log-level", () => Results.Ok(d.GetLogLevel()));
        app.MapPut("/v1/log-level", (LogLevelRequest r) => Results.Ok(d.SetLogLevel(r.Level)));
        app.MapPost("/v1/config/reload", async () => Results.Ok(await d.ReloadAsync("hrt config reload")));

        // Turn the runtime's user-facing exceptions into one-sentence errors.
        app.Use(async (context, next) =>
        {
            try
            {
                await next(context);
                d.Log.Debug("control: {Method} {Path} -> {Status}", context.Request.Method, context.Request.Path.Value, context.Response.StatusCode);
            }
            catch (LunException e)
            {
                d.Log.Debug("control: {Method} {Path} refused: {Reason}", context.Request.Method, context.Request.Path.Value, e.Message);
                await Error(context, e.Kind switch { LunError.NotFound => 404, LunError.Conflict => 409, _ => 400 }, e.Message);
            }
            catch (FormatException e)
            {
                await Error(context, 400, e.Message);
            }
            catch (BadHttpRequestException e)
            {
                await Error(context, 400, $"The request body is not what this endpoint takes: {e.Message}");
            }
        });
    }

    private static Task Error(HttpContext context, int status, string message)
    {
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(new ErrorDto(message));
    }

    private static async Task<bool> IsListeningAsync(string path)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await s.ConnectAsync(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    [LibraryImport("libc")]
    private static partial int umask(int mask);

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
        try { File.Delete(SocketPath); } catch (IOException) { }
    }
}
