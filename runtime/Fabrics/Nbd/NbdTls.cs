using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace HandlerRuntime.Fabrics.Nbd;

/// <summary>
/// TLS for NBD_OPT_STARTTLS: the server's X.509 certificate and key from PEM files, and, when
/// a client CA is configured, client certificates that must chain to it. The handshake runs
/// through <see cref="SslStream"/> (OpenSSL underneath), TLS 1.2 or 1.3 as the protocol asks.
/// </summary>
internal sealed class NbdTls : IDisposable
{
    private readonly X509Certificate2 certificate;
    private readonly X509Certificate2Collection? clientCas;
    private readonly SslStreamCertificateContext context;

    private NbdTls(NbdTlsSettings settings, X509Certificate2 certificate, X509Certificate2Collection? clientCas)
    {
        Settings = settings;
        this.certificate = certificate;
        this.clientCas = clientCas;
        context = SslStreamCertificateContext.Create(certificate, additionalCertificates: null, offline: true);
    }

    public NbdTlsSettings Settings { get; }

    /// <summary>Whether clients must present a certificate that chains to the configured CA.</summary>
    public bool VerifiesClients => clientCas is not null;

    /// <summary>What is wrong with the files, one sentence each (nothing when they load).</summary>
    public static IReadOnlyList<string> Check(NbdTlsSettings settings)
    {
        var errors = new List<string>();
        try
        {
            Load(settings).Dispose();
        }
        catch (NbdTlsException e)
        {
            errors.Add(e.Message);
        }
        return errors;
    }

    /// <summary>Reads the certificate, key and client CA; throws <see cref="NbdTlsException"/> with a sentence naming the setting.</summary>
    public static NbdTls Load(NbdTlsSettings settings)
    {
        X509Certificate2 cert;
        try
        {
            cert = X509Certificate2.CreateFromPemFile(settings.Certificate, settings.Key);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            throw new NbdTlsException($"nbd.tls.certificate: {settings.Certificate} with key {settings.Key} cannot be loaded ({e.Message}); give a PEM certificate and its PEM private key.");
        }
        if (!cert.HasPrivateKey)
        {
            cert.Dispose();
            throw new NbdTlsException($"nbd.tls.key: {settings.Key} holds no private key for {settings.Certificate}.");
        }
        if (cert.NotAfter < DateTime.Now)
        {
            var expired = cert.NotAfter;
            cert.Dispose();
            throw new NbdTlsException($"nbd.tls.certificate: {settings.Certificate} expired on {expired:u}; renew it.");
        }
        X509Certificate2Collection? cas = null;
        if (settings.ClientCa is { } caFile)
        {
            cas = [];
            try
            {
                cas.ImportFromPemFile(caFile);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
            {
                cert.Dispose();
                throw new NbdTlsException($"nbd.tls.clientCa: {caFile} cannot be read as PEM certificates ({e.Message}).");
            }
            if (cas.Count == 0)
            {
                cert.Dispose();
                throw new NbdTlsException($"nbd.tls.clientCa: {caFile} holds no certificate; give the PEM certificate of the CA that signs client certificates.");
            }
        }
        return new NbdTls(settings, cert, cas);
    }

    /// <summary>The server side of the TLS handshake on <paramref name="inner"/>; throws when it fails (the connection then ends).</summary>
    public async Task<SslStream> AuthenticateAsync(Stream inner, CancellationToken ct)
    {
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
            {
                ServerCertificateContext = context,
                ClientCertificateRequired = VerifiesClients,
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = ValidateClient,
            }, ct);
            return ssl;
        }
        catch
        {
            await ssl.DisposeAsync();
            throw;
        }
    }

    private bool ValidateClient(object sender, X509Certificate? presented, X509Chain? _, SslPolicyErrors errors)
    {
        if (clientCas is null)
            return true; // no client certificate asked for: whatever is sent is not looked at
        if (presented is null)
            return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(clientCas);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid("1.3.6.1.5.5.7.3.2")); // TLS client authentication
        using var cert = new X509Certificate2(presented);
        return chain.Build(cert);
    }

    /// <summary>Subject of the certificate a client presented, for operators.</summary>
    public static string? ClientSubject(SslStream ssl) => ssl.RemoteCertificate?.Subject;

    public void Dispose() => certificate.Dispose();
}

/// <summary>The TLS files cannot be used; the message names the setting and says what to do.</summary>
internal sealed class NbdTlsException(string message) : Exception(message);
