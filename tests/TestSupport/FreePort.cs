using System.Net;
using System.Net.Sockets;

namespace HandlerRuntime.TestSupport;

/// <summary>A TCP port on loopback that nothing listens on right now.</summary>
public static class FreePort
{
    public static int Next()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }
}
