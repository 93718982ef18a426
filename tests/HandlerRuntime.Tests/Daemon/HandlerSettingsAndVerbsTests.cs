using System.Text.Json.Nodes;
using HandlerRuntime.Tests.Plugins;

namespace HandlerRuntime.Tests.Daemon;

/// <summary>
/// A handler's own settings (handlers.&lt;subtype&gt; in the config file) and verbs
/// (`hrt &lt;subtype&gt; &lt;verb&gt;`), through a real daemon and the real CLI, with the versioned
/// fixture plugin: given at start, changed by a reload, refused with a sentence.
/// </summary>
public sealed class HandlerSettingsAndVerbsTests
{
    private static async Task<(HrtDaemon Daemon, TempDir Handlers)> StartAsync(string greeting)
    {
        var handlers = new TempDir("hrt-verbs-handlers");
        PluginFolders.Install(PluginFolders.V1, handlers.Path);
        var daemon = await HrtDaemon.StartAsync(c => c["handlers"] = new JsonObject { ["versioned"] = new JsonObject { ["greeting"] = greeting } }, handlerPath: handlers.Path);
        return (daemon, handlers);
    }

    [Fact]
    public async Task A_handler_verb_runs_with_the_settings_given_at_start_and_after_a_reload()
    {
        var (daemon, handlers) = await StartAsync("ahoy");
        await using var _ = daemon;
        using var __ = handlers;

        Assert.Equal("ahoy, world (build 1.0.0)", (await daemon.CliOkAsync("versioned", "greet", "world")).Trim());
        var json = JsonNode.Parse(await daemon.CliOkAsync("versioned", "greet", "world", "--json"))!;
        Assert.Equal("ahoy", json["greeting"]!.GetValue<string>());
        Assert.Contains("greet", await daemon.CliOkAsync("handlers")); // listed beside the handler

        var config = JsonNode.Parse(await File.ReadAllTextAsync(daemon.ConfigPath))!.AsObject();
        config["handlers"]!["versioned"]!["greeting"] = "moin";
        await File.WriteAllTextAsync(daemon.ConfigPath, config.ToJsonString()); // the daemon watches its file and reloads
        await daemon.WaitForOutputAsync(o => o.Contains("settings of handler versioned"), TimeSpan.FromSeconds(20), "the reload that changes the handler's settings");
        Assert.Equal("moin, world (build 1.0.0)", (await daemon.CliOkAsync("versioned", "greet", "world")).Trim());
    }

    [Fact]
    public async Task Refused_settings_refuse_the_reload_and_a_wrong_verb_or_argument_is_one_sentence()
    {
        var (daemon, handlers) = await StartAsync("ahoy");
        await using var _ = daemon;
        using var __ = handlers;

        var config = JsonNode.Parse(await File.ReadAllTextAsync(daemon.ConfigPath))!.AsObject();
        config["handlers"]!["versioned"]!["greeting"] = "refuse-me";
        await File.WriteAllTextAsync(daemon.ConfigPath, config.ToJsonString());
        var reload = await daemon.CliAsync("config", "reload");
        Assert.NotEqual(0, reload.ExitCode);
        Assert.Contains("handlers.versioned: greeting 'refuse-me' is refused", reload.Output);
        Assert.Equal("ahoy, x (build 1.0.0)", (await daemon.CliOkAsync("versioned", "greet", "x")).Trim()); // the old settings stay

        var noVerb = await daemon.CliAsync("versioned", "frobnicate");
        Assert.Equal(1, noVerb.ExitCode);
        Assert.Contains("The versioned handler has no verb 'frobnicate'; it has greet.", noVerb.StdErr);
        var badArgs = await daemon.CliAsync("versioned", "greet");
        Assert.Equal(1, badArgs.ExitCode);
        Assert.Contains("greet takes one name", badArgs.StdErr);
        var nothing = await daemon.CliAsync("nosuchthing", "status");
        Assert.NotEqual(0, nothing.ExitCode);
        Assert.Contains("No loaded handler serves subtype 'nosuchthing'", nothing.Output);
    }

    [Fact]
    public async Task Settings_the_handler_refuses_at_start_stop_the_daemon_with_a_sentence()
    {
        using var handlers = new TempDir("hrt-verbs-handlers");
        PluginFolders.Install(PluginFolders.V1, handlers.Path);
        var e = await Assert.ThrowsAnyAsync<Exception>(() => HrtDaemon.StartAsync(c => c["handlers"] = new JsonObject { ["versioned"] = new JsonObject { ["greeting"] = "refuse-me" } },
            handlerPath: handlers.Path, timeout: TimeSpan.FromSeconds(30)));
        Assert.Contains("handlers.versioned: greeting 'refuse-me' is refused", e.Message);
    }
}
