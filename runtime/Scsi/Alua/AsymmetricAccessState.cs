namespace HandlerRuntime.Scsi.Alua;

/// <summary>Asymmetric access states of a target port group (SPC-4 5.15.2.4), with their codes.</summary>
public enum AsymmetricAccessState : byte
{
    ActiveOptimized = 0x0,
    ActiveNonOptimized = 0x1,
    Standby = 0x2,
    Unavailable = 0x3,
    Transitioning = 0xF,
}
