using System.Text.Json.Nodes;

namespace HandlerRuntime.Sdk;

/// <summary>Optional, on an <see cref="IBlockDevice"/>: handler-specific state shown by <c>hrt status</c>.</summary>
public interface IHasStatus
{
    /// <summary>A small JSON object describing the device's state (for example a replication role and sync progress).</summary>
    JsonObject GetStatus();
}
