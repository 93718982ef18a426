namespace HandlerRuntime.Scsi.Copy;

/// <summary>
/// The logical units an EXTENDED COPY may name as copy sources and destinations (CSCDs)
/// besides the LU that received it. The copy manager matches CSCD identification
/// descriptors against these LUs' VPD 83h designators.
/// </summary>
public interface ICopyTargetDirectory
{
    /// <summary>The LUs the initiator behind <paramref name="nexus"/> may reach, in any order.</summary>
    IEnumerable<ScsiLun> ReachableFrom(ItNexus nexus);
}

/// <summary>
/// Every LU of this runtime that the initiator could use directly: the LUs of the target the
/// command came through, and those of any other target whose access list admits the
/// initiator without authentication. A copy must not reach an LU the initiator could not
/// log in to (tcmu-runner's XCOPY ignored this: CVE-2021-3139); a target that requires CHAP
/// is reachable only from a session that authenticated to that target.
/// </summary>
public sealed class TargetRegistryCopyTargets(TargetRegistry targets) : ICopyTargetDirectory
{
    public IEnumerable<ScsiLun> ReachableFrom(ItNexus nexus)
    {
        foreach (var target in targets.All)
        {
            var own = string.Equals(target.Name, nexus.TargetPort.TargetName, StringComparison.OrdinalIgnoreCase);
            if (!own && (target.Access.Chap is not null || !target.Access.Allows(nexus.InitiatorName)))
                continue;
            foreach (var (_, lun) in target.Luns)
                yield return lun;
        }
    }
}
