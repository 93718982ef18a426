using System.Net;
using HandlerRuntime.Config;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace HandlerRuntime.Metrics;

/// <summary>
/// `GET /metrics` on the address in the config's <c>metrics.listen</c> (off by default: the
/// figures name LUNs and initiators' load, so they are offered only where asked for).
/// </summary>
public sealed class MetricsServer : IAsyncDisposable
{
    private readonly WebApplication app;

    private MetricsServer(WebApplication app, string listen)
    {
        this.app = app;
        Listen = listen;
    }

    public string Listen { get; }

    public static async Task<MetricsServer> StartAsync(string listen, Daemon daemon)
    {
        if (!RuntimeSettings.TryParsePortal(listen, out var host, out var port))
            throw new StartupException($"metrics.listen: '{listen}' is not an address:port; write it like 127.0.0.1:9464.");
        var address = host == "localhost" ? IPAddress.Loopback : IPAddress.Parse(host);
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "hrt-metrics" });
        builder.WebHost.UseKestrelCore().ConfigureKestrel(o => o.Listen(address, port));
        builder.Services.AddRoutingCore();
        builder.Logging.ClearProviders();
        var app = builder.Build();
        app.MapGet("/metrics", () => Results.Text(MetricsText.Render(daemon), MetricsText.ContentType));
        try
        {
            await app.StartAsync();
        }
        catch (IOException e)
        {
            await app.DisposeAsync();
            throw new StartupException($"metrics.listen: {listen} cannot be opened ({e.Message}); choose another address or port.");
        }
        return new MetricsServer(app, listen);
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
