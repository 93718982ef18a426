using System.CommandLine;
using System.Text.Json;
using HandlerRuntime.Config;
using HandlerRuntime.Control;
using HandlerRuntime.Sdk;

namespace HandlerRuntime.Cli;

/// <summary>
/// `hrt &lt;subtype&gt; &lt;verb&gt; [arguments]`: a handler's own verbs (IHandlerCommands), for example
/// `hrt drbd status r0`. The verbs live in plugins and change at runtime, so they are not part of
/// the parsed command tree: any first word that is not one of hrt's own verbs names a handler.
/// </summary>
public static class HandlerVerbs
{
    /// <summary>Whether <paramref name="args"/> asks for a handler's verb rather than one of <paramref name="root"/>'s.</summary>
    public static bool Applies(RootCommand root, string[] args)
        => args.Length > 0 && !args[0].StartsWith('-') && !root.Subcommands.Any(c => c.Name == args[0]);

    public static async Task<int> RunAsync(string[] args)
    {
        var json = false;
        string? control = null;
        var words = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == "--json")
                json = true;
            else if (args[i] == "--control" && i + 1 < args.Length)
                control = args[++i];
            else
                words.Add(args[i]);
        }
        var socket = control ?? (Environment.GetEnvironmentVariable("HRT_CONTROL") is { Length: > 0 } env ? env : RuntimeSettings.DefaultControlSocket);
        var subtype = words[0];
        using var client = new ControlClient(socket);
        try
        {
            if (words.Count < 2 || words[1] is "--help" or "-h" or "help")
                return await HelpAsync(client, subtype, words.Count >= 2);
            var (result, raw) = await client.SendRawAsync<HandlerCommandResult>(HttpMethod.Post, $"v1/handlers/{Uri.EscapeDataString(subtype)}/commands",
                new HandlerCommandRequest(words[1], words.Skip(2).ToList()));
            if (json)
                Console.WriteLine(result.Json is { } node ? node.ToJsonString(ControlClient.Json) : raw);
            else if (result.Ok)
                Console.WriteLine(result.Text);
            else
                await Console.Error.WriteLineAsync($"hrt: {result.Text}");
            return result.Ok ? 0 : 1;
        }
        catch (CliException e) when (e.Message.StartsWith("No hrt daemon", StringComparison.Ordinal))
        {
            await Console.Error.WriteLineAsync($"hrt: '{subtype}' is not one of hrt's verbs (`hrt --help` lists them); a handler's verbs need a running daemon, and {char.ToLowerInvariant(e.Message[0])}{e.Message[1..]}");
            return 2;
        }
        catch (CliException e)
        {
            if (json)
                Console.WriteLine(JsonSerializer.Serialize(new ErrorDto(e.Message), ControlClient.Json));
            await Console.Error.WriteLineAsync($"hrt: {e.Message}");
            return 1;
        }
    }

    private static async Task<int> HelpAsync(ControlClient client, string subtype, bool asked)
    {
        var handlers = await client.GetAsync<List<HandlerDto>>("v1/handlers");
        var handler = handlers.FirstOrDefault(h => h.Subtype == subtype);
        if (handler is null)
        {
            await Console.Error.WriteLineAsync($"hrt: '{subtype}' is neither an hrt verb nor a loaded handler (loaded: {string.Join(", ", handlers.Select(h => h.Subtype))}); `hrt --help` lists the verbs.");
            return 2;
        }
        if (handler.Verbs.Count == 0)
        {
            await Console.Error.WriteLineAsync($"hrt: the {subtype} handler has no verbs of its own.");
            return 2;
        }
        var text = $"Verbs of the {subtype} handler (plugin {handler.Plugin} {handler.Version}):\n" +
            string.Join("\n", handler.Verbs.Select(v => $"  hrt {subtype} {v.Name} {v.Usage}".TrimEnd() + $"\n      {v.Description}"));
        if (asked)
            Console.WriteLine(text);
        else
            await Console.Error.WriteLineAsync(text);
        return asked ? 0 : 2;
    }
}
