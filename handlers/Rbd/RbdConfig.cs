using System.Globalization;

namespace HandlerRuntime.Handlers.Rbd;

/// <summary>
/// The handler config of an rbd LUN, as tcmu-runner's rbd handler reads it:
/// <c>&lt;pool&gt;/&lt;image&gt;[;osd_op_timeout=N][;conf=&lt;path&gt;][;id=&lt;client id&gt;]</c>.
/// Unlike tcmu-runner, an option it does not know is refused rather than ignored, so a typo
/// does not silently change how a LUN fails over.
/// </summary>
internal sealed record RbdConfig(string Pool, string Image, int? OsdOpTimeoutSeconds, string? ConfPath, string? ClientId)
{
    public const string Help =
        "rbd/<pool>/<image>[;osd_op_timeout=<seconds>][;conf=<ceph.conf>][;id=<client id>]  A Ceph RBD image through librbd. " +
        "With --size, a missing image is created. osd_op_timeout fails I/O to an unreachable OSD after that many seconds (default 30); " +
        "conf defaults to $CEPH_CONF or /etc/ceph/ceph.conf; id defaults to admin.";

    /// <summary>The client id librados is created with (client.&lt;id&gt;).</summary>
    public string EffectiveClientId => ClientId ?? "admin";

    /// <summary>The conf file read: the option, else $CEPH_CONF, else librados' default search (null).</summary>
    public string? EffectiveConfPath => ConfPath ?? (Environment.GetEnvironmentVariable("CEPH_CONF") is { Length: > 0 } env ? env : null);

    public override string ToString() => $"{Pool}/{Image}";

    /// <summary>Parses a handler config, or says in one sentence what is wrong with it.</summary>
    public static bool TryParse(string config, out RbdConfig parsed, out string? error)
    {
        parsed = null!;
        error = null;
        var parts = config.Split(';');
        var slash = parts[0].IndexOf('/');
        if (slash <= 0 || slash == parts[0].Length - 1)
        {
            error = $"'{config}' does not name a pool and an image; write rbd/<pool>/<image>, for example rbd/rbd/disk0.";
            return false;
        }
        var pool = parts[0][..slash];
        var image = parts[0][(slash + 1)..];
        if (image.Contains('/') || image.Contains('@'))
        {
            error = $"'{image}' is not an image name: it may not contain '/' or '@' (namespaces and snapshots are not served).";
            return false;
        }
        int? timeout = null;
        string? conf = null, id = null;
        foreach (var option in parts.Skip(1))
        {
            var eq = option.IndexOf('=');
            var key = eq < 0 ? option : option[..eq];
            var value = eq < 0 ? "" : option[(eq + 1)..];
            if (eq < 0 || value.Length == 0)
            {
                error = $"option '{option}' has no value; write {key}=<value>.";
                return false;
            }
            switch (key)
            {
                case "osd_op_timeout":
                    if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) || seconds is < 1 or > 3600)
                    {
                        error = $"osd_op_timeout={value} is not a number of seconds from 1 to 3600.";
                        return false;
                    }
                    timeout = seconds;
                    break;
                case "conf":
                    if (!Path.IsPathRooted(value))
                    {
                        error = $"conf={value} is not an absolute path to a ceph.conf.";
                        return false;
                    }
                    conf = value;
                    break;
                case "id":
                    if (value.Any(c => char.IsWhiteSpace(c) || c == '.'))
                    {
                        error = $"id={value} is not a client id; give the part after 'client.', for example id=iscsi.";
                        return false;
                    }
                    id = value;
                    break;
                default:
                    error = $"'{key}' is not an rbd option; the options are osd_op_timeout=<seconds>, conf=<path> and id=<client id>.";
                    return false;
            }
        }
        parsed = new RbdConfig(pool, image, timeout, conf, id);
        return true;
    }
}
