namespace HandlerRuntime.Sdk;

/// <summary>
/// Optional, on an <see cref="IHandler"/> whose store lives elsewhere (a cluster, a peer): checks
/// that a config's store answers, without opening it, and gives up within a short time of its own
/// so that an unreachable store is reported rather than waited for. <c>hrt check-config --reach</c>
/// calls it after <see cref="IHandler.CheckConfig"/> passed.
/// </summary>
public interface IReachabilityCheck
{
    /// <summary>Valid when the store answered; otherwise one sentence saying what could not be reached and what to do.</summary>
    ValueTask<ConfigCheck> CheckReachableAsync(string config, CancellationToken cancellationToken);
}
