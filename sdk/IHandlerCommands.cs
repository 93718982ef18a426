using System.Text.Json.Nodes;

namespace HandlerRuntime.Sdk;

/// <summary>
/// Optional, on an <see cref="IHandler"/> with a life of its own beyond its LUNs (DRBD's
/// resources, remote sessions): verbs that `hrt &lt;subtype&gt; &lt;verb&gt; [arguments]` and the
/// control API run, for example <c>hrt drbd status r0</c>. `hrt handlers` lists them.
/// </summary>
public interface IHandlerCommands
{
    /// <summary>The verbs, with their usage, shown by `hrt handlers` and `hrt &lt;subtype&gt; --help`.</summary>
    IReadOnlyList<HandlerVerb> Verbs { get; }

    /// <summary>
    /// Runs <paramref name="verb"/>. A failure the user can fix is a result with Ok false and a
    /// sentence saying what to do, not an exception.
    /// </summary>
    ValueTask<HandlerCommandResult> RunAsync(string verb, IReadOnlyList<string> arguments, CancellationToken cancellationToken);
}

/// <summary>One verb of a handler.</summary>
/// <param name="Name">The verb, for example <c>status</c>.</param>
/// <param name="Usage">Its arguments, for example <c>[--json] &lt;resource&gt;</c>.</param>
/// <param name="Description">What it does, in one line.</param>
public sealed record HandlerVerb(string Name, string Usage, string Description);

/// <summary>What a verb did.</summary>
/// <param name="Ok">Whether it succeeded (the CLI exits 0 or 1).</param>
/// <param name="Text">What the CLI prints (a table, a status line, or why it failed).</param>
/// <param name="Json">What `--json` prints; null prints <c>{"ok": ..., "text": ...}</c>.</param>
public sealed record HandlerCommandResult(bool Ok, string Text, JsonNode? Json = null);
