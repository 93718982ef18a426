namespace HandlerRuntime.Sdk;

/// <summary>The asymmetric access states (SPC-4 5.15.2.4) a handler can put its LU in, with their codes.</summary>
public enum DeviceAccessState : byte
{
    /// <summary>Every command is served; the path initiators should prefer.</summary>
    ActiveOptimized = 0x0,
    /// <summary>Every command is served, but another gateway is the preferred one.</summary>
    ActiveNonOptimized = 0x1,
    /// <summary>Only the commands SPC-4 lists for standby are served; media access gets NOT READY (04h/0Bh).</summary>
    Standby = 0x2,
    /// <summary>Media access gets NOT READY (04h/0Ch).</summary>
    Unavailable = 0x3,
    /// <summary>Changing between states; media access gets NOT READY (04h/0Ah) and initiators retry.</summary>
    Transitioning = 0xF,
}
