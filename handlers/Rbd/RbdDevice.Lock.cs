using HandlerRuntime.Handlers.Rbd.Native;
using HandlerRuntime.Sdk;
using Microsoft.Extensions.Logging;

namespace HandlerRuntime.Handlers.Rbd;

/// <summary>
/// Multi-gateway writes through the image's exclusive lock, as tcmu-runner's implicit ALUA does it
/// (README.md, "Several gateways"). The gateway holding the lock is active/optimized; the others are
/// active/non-optimized and still serve reads. A write reaching a gateway without the lock is an
/// implicit failover: the LU turns transitioning, the gateway breaks the owner's lock (librbd
/// blocklists that owner, so nothing it still has in flight lands) and takes it, the LU turns
/// active/optimized and the write proceeds. The fenced gateway sees its lock gone, reports
/// active/non-optimized, and reconnects so that it serves reads again and can take the lock back.
/// </summary>
internal sealed partial class RbdDevice
{
    private enum LockState
    {
        /// <summary>No exclusive-lock feature, or a read-only LUN: nothing to arbitrate.</summary>
        Unmanaged,
        Owner,
        NotOwner,
        Acquiring,
    }

    private readonly object lockGate = new();
    private volatile LockState lockState;
    private Task? acquiring;
    private Task? watchdog;
    private string[] lastOwners = [];

    private bool WritesReady => lockState is LockState.Unmanaged or LockState.Owner;

    private string LockStateName => lockState switch
    {
        LockState.Unmanaged => "not managed",
        LockState.Owner => "owner",
        LockState.NotOwner => "not owner",
        _ => "acquiring",
    };

    private string LockOwnerText
    {
        get
        {
            var owners = lastOwners;
            if (owners.Length == 0)
                return "none";
            var self = session.Connection.Address;
            return string.Join(", ", owners.Select(o => o == self ? $"{o} (this gateway)" : o));
        }
    }

    /// <summary>At open: take the lock when nobody holds it, else stay non-optimized. Blocks: a pool thread.</summary>
    private void StartLockModel()
    {
        var s = session;
        if (readOnly || !s.HasExclusiveLock)
        {
            if (!readOnly)
                log.LogWarning("rbd: image {Image} has no exclusive-lock feature: several gateways writing it are not fenced from each other (rbd feature enable {Image} exclusive-lock)", config, config);
            lockState = LockState.Unmanaged;
            return;
        }
        var r = Librbd.LockOwners(s.Image, out var owners);
        if (r < 0)
            throw new RbdException(r, $"Could not read the lock owners of image {config}: {Errno.Describe(r)}.");
        lastOwners = owners;
        if (owners.Length == 0 && (r = Librbd.rbd_lock_acquire(s.Image, Librbd.LockModeExclusive)) == 0)
        {
            lockState = LockState.Owner;
            lastOwners = [s.Connection.Address];
            Report(DeviceAccessState.ActiveOptimized, "this gateway took the image's exclusive lock");
        }
        else
        {
            lockState = LockState.NotOwner;
            Report(DeviceAccessState.ActiveNonOptimized, owners.Length > 0 ? $"another gateway ({owners[0]}) holds the image's exclusive lock" : $"the exclusive lock could not be taken ({Errno.Describe(r)})");
        }
        watchdog = Task.Run(WatchLockAsync);
    }

    /// <summary>Completes when this gateway may write: at once when it holds the lock, else after taking it.</summary>
    private ValueTask AcquireLockAsync()
    {
        if (WritesReady)
            return default;
        lock (lockGate)
        {
            if (WritesReady)
                return default;
            if (acquiring is null)
            {
                lockState = LockState.Acquiring;
                Report(DeviceAccessState.Transitioning, "a write arrived: taking the image's exclusive lock");
                acquiring = Task.Run(TakeLock);
            }
            return new ValueTask(acquiring);
        }
    }

    /// <summary>Breaks the current owner's lock (which blocklists it) and takes it. Blocks: a pool thread.</summary>
    private void TakeLock()
    {
        var s = session;
        try
        {
            var r = Librbd.LockOwners(s.Image, out var owners);
            if (r < 0)
                throw new RbdException(r, $"reading the lock owners failed: {Errno.Describe(r)}");
            foreach (var owner in owners.Where(o => o != s.Connection.Address))
            {
                log.LogWarning("rbd: image {Image}: breaking the exclusive lock of {Owner} (it is blocklisted) to take it here", config, owner);
                r = Librbd.rbd_lock_break(s.Image, Librbd.LockModeExclusive, owner);
                if (r < 0 && r != -Errno.ENOENT)
                    throw new RbdException(r, $"breaking the lock of {owner} failed: {Errno.Describe(r)}");
            }
            r = Librbd.rbd_lock_acquire(s.Image, Librbd.LockModeExclusive);
            if (r < 0)
                throw new RbdException(r, $"taking the exclusive lock failed: {Errno.Describe(r)}");
            lastOwners = [s.Connection.Address];
            lockState = LockState.Owner;
            Report(DeviceAccessState.ActiveOptimized, "this gateway took the image's exclusive lock");
        }
        catch (RbdException e)
        {
            lockState = LockState.NotOwner;
            Report(DeviceAccessState.ActiveNonOptimized, e.Message);
            Trouble(e.Errno, s, write: true);
            throw new ScsiException(Sense.NotReadyTransitioning, $"image {config}: {e.Message}");
        }
        finally
        {
            lock (lockGate)
                acquiring = null;
        }
    }

    /// <summary>
    /// librbd has no callback for "your lock was broken": a fenced owner learns it from its next
    /// operation. So while this gateway owns the lock, it asks librbd once a second (a local check,
    /// no cluster round trip), and an idle fenced gateway still turns non-optimized within a second.
    /// </summary>
    private async Task WatchLockAsync()
    {
        using var tick = new PeriodicTimer(TimeSpan.FromSeconds(1));
        try
        {
            while (await tick.WaitForNextTickAsync(closing.Token))
                CheckLockOwnership();
        }
        catch (OperationCanceledException)
        {
        }
    }

    private void CheckLockOwnership()
    {
        if (lockState != LockState.Owner)
            return;
        var s = session;
        var r = Librbd.rbd_is_exclusive_lock_owner(s.Image, out var owner);
        if (r == 0 && owner != 0)
            return;
        if (r < 0 && r != -Errno.ESHUTDOWN)
            return; // cannot tell now; the next check or operation will
        LockLost(r == -Errno.ESHUTDOWN ? "this gateway was blocklisted: another gateway broke its exclusive lock" : "another gateway took the exclusive lock");
        if (r == -Errno.ESHUTDOWN)
            Trouble(r, s, write: false);
    }

    private void LockLost(string reason)
    {
        lock (lockGate)
        {
            if (lockState != LockState.Owner)
                return;
            lockState = LockState.NotOwner;
        }
        lastOwners = [];
        log.LogWarning("rbd: image {Image}: {Reason}", config, reason);
        Report(DeviceAccessState.ActiveNonOptimized, reason);
    }

    private void Report(DeviceAccessState state, string reason) => events.AccessStateChanged(state, reason);

    /// <summary>At close: hand the lock back, so that another gateway takes it without fencing this one.</summary>
    private async Task StopLockModelAsync()
    {
        if (watchdog is not null)
            await watchdog;
        if (lockState == LockState.Owner)
        {
            var s = session;
            await Task.Run(() => Librbd.rbd_lock_release(s.Image));
        }
    }
}
