using System.Text.RegularExpressions;

namespace HandlerRuntime.Luns;

/// <summary>
/// What a user asks for: a LUN's name and cfgstring plus the settings that are the
/// runtime's, not the handler's. Null/zero fields mean "choose for me" (size from the
/// store, block size 512, the default target, the lowest free LUN number).
/// </summary>
public sealed partial record LunDefinition(string Name, string Cfgstring)
{
    /// <summary>Size in bytes; 0 takes it from the backing store.</summary>
    public long Size { get; init; }

    /// <summary>Logical block size; 0 means the handler's default.</summary>
    public int BlockSize { get; init; }

    /// <summary>Physical block size reported to initiators (READ CAPACITY(16), VPD B0h, with the UNMAP granularity to match); 0 takes the device's.</summary>
    public int PhysicalBlockSize { get; init; }

    /// <summary>Target IQN; null means the default target.</summary>
    public string? Target { get; init; }

    /// <summary>LUN number in the target; null means the lowest free one.</summary>
    public int? Lun { get; init; }

    public bool WriteCache { get; init; } = true;

    public bool ReadOnly { get; init; }

    /// <summary>Removable medium (RMB=1): START STOP UNIT can eject and load it, PREVENT ALLOW MEDIUM REMOVAL holds it.</summary>
    public bool Removable { get; init; }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
    private static partial Regex NamePattern();

    /// <summary>Checks what can be checked without the handler; returns a sentence or null.</summary>
    public string? Validate()
    {
        if (!NamePattern().IsMatch(Name))
            return $"'{Name}' is not a valid LUN name: use 1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit.";
        if (SplitCfgstring(Cfgstring) is null)
            return $"LUN {Name}: cfgstring '{Cfgstring}' has no '/': write <subtype>/<handler config>, for example file//var/lib/hrt/disk0.img or ram/@.";
        if (Size < 0)
            return $"LUN {Name}: size cannot be negative.";
        if (BlockSize != 0 && !Sdk.DeviceGeometry.IsValidBlockSize(BlockSize))
            return $"LUN {Name}: block size {BlockSize} is not one of 512, 1024, 2048, 4096.";
        if (Size > 0 && Size % Math.Max(512, BlockSize) != 0)
            return $"LUN {Name}: size {Size} is not a multiple of the block size {Math.Max(512, BlockSize)}.";
        if (PhysicalBlockSize != 0 && (PhysicalBlockSize < 512 || PhysicalBlockSize > 1 << 20 || (PhysicalBlockSize & (PhysicalBlockSize - 1)) != 0
                || PhysicalBlockSize < Math.Max(512, BlockSize) || PhysicalBlockSize / Math.Max(512, BlockSize) > 1 << 15))
            return $"LUN {Name}: physical block size {PhysicalBlockSize} must be a power of two from the logical block size ({Math.Max(512, BlockSize)}) to 1M.";
        if (Lun is < 0 or > Scsi.ScsiTarget.MaxLunNumber)
            return $"LUN {Name}: LUN number {Lun} is outside 0-{Scsi.ScsiTarget.MaxLunNumber}.";
        return null;
    }

    /// <summary>Splits <c>subtype/config</c> at the first '/', or null when there is none.</summary>
    public static (string Subtype, string Config)? SplitCfgstring(string cfgstring)
    {
        var slash = cfgstring.IndexOf('/');
        if (slash <= 0)
            return null;
        return (cfgstring[..slash], cfgstring[(slash + 1)..]);
    }
}

/// <summary>A failure a user can act on; the message is one sentence saying what is wrong and what to do.</summary>
public sealed class LunException(string message, LunError kind = LunError.Invalid) : Exception(message)
{
    public LunError Kind { get; } = kind;
}

public enum LunError
{
    Invalid,
    NotFound,
    Conflict,
}
