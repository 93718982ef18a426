using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using HandlerRuntime.Control;

namespace HandlerRuntime.Cli;

/// <summary>Talks to a running daemon over its Unix socket. Every failure becomes a <see cref="CliException"/> with a sentence.</summary>
public sealed class ControlClient : IDisposable
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };
    private readonly HttpClient http;

    public ControlClient(string socketPath)
    {
        SocketPath = socketPath;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        http = new HttpClient(handler) { BaseAddress = new Uri("http://hrt/"), Timeout = TimeSpan.FromMinutes(5) };
    }

    public string SocketPath { get; }

    public Task<T> GetAsync<T>(string path) => SendAsync<T>(HttpMethod.Get, path, null);

    public Task<T> PostAsync<T>(string path, object? body) => SendAsync<T>(HttpMethod.Post, path, body);

    public Task<T> PutAsync<T>(string path, object body) => SendAsync<T>(HttpMethod.Put, path, body);

    public Task DeleteAsync(string path) => SendAsync<object?>(HttpMethod.Delete, path, null);

    /// <summary>The raw JSON body of a call, for --json output.</summary>
    public async Task<(T Value, string Json)> SendRawAsync<T>(HttpMethod method, string path, object? body)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
            request.Content = JsonContent.Create(body, body.GetType(), options: Json);
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request);
        }
        catch (HttpRequestException e) when (e.InnerException is SocketException se)
        {
            throw new CliException(se.SocketErrorCode switch
            {
                SocketError.AccessDenied => $"Permission denied on {SocketPath}: the control socket is mode 0600, so run hrt as the daemon's user (usually root).",
                _ => $"No hrt daemon is listening on {SocketPath}. Start one with `hrt serve`, or point --control (or HRT_CONTROL) at its socket.",
            });
        }
        catch (HttpRequestException e) when (e.InnerException is UnauthorizedAccessException)
        {
            throw new CliException($"Permission denied on {SocketPath}: the control socket is mode 0600, so run hrt as the daemon's user (usually root).");
        }
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync();
            if (!response.IsSuccessStatusCode)
            {
                string? message = null;
                try { message = JsonSerializer.Deserialize<ErrorDto>(text, Json)?.Error; } catch (JsonException) { }
                throw new CliException(message ?? $"The daemon answered {(int)response.StatusCode} {response.ReasonPhrase}.");
            }
            if (response.StatusCode == HttpStatusCode.NoContent || text.Length == 0)
                return (default!, "{}");
            var value = JsonSerializer.Deserialize<T>(text, Json)!;
            return (value, JsonSerializer.Serialize(JsonDocument.Parse(text).RootElement, Json));
        }
    }

    private async Task<T> SendAsync<T>(HttpMethod method, string path, object? body) => (await SendRawAsync<T>(method, path, body)).Value;

    public void Dispose() => http.Dispose();
}

/// <summary>A CLI failure: printed as one sentence to stderr, exit status 1.</summary>
public sealed class CliException(string message) : Exception(message);
