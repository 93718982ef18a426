using System.Security.Cryptography;
using System.Text;
using HandlerRuntime.Handlers.Shared;

namespace HandlerRuntime.Handlers.Crypt;

/// <summary>
/// The key of a crypt/ device, in its state directory: <c>xts-key</c>, mode 0600, holding the line
/// <c>hrt-crypt xts-aes-256 v1</c> and then the 64 key bytes (Key1 | Key2). Created on the first
/// open, replaced by a crypto erase; both all or nothing across a crash (<see cref="DurableFile"/>),
/// so the file always holds the key the data on the device was written with, or, after a crypto
/// erase got as far as the rename, the new one (the old data then unreadable, as it must be).
/// </summary>
internal static class CryptKeyFile
{
    public const string FileName = "xts-key";
    public const int KeyBytes = 64;
    private static readonly byte[] Header = Encoding.ASCII.GetBytes("hrt-crypt xts-aes-256 v1\n");
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>The key in <paramref name="directory"/>, made (and written) when there is none yet.</summary>
    public static byte[] LoadOrCreate(string directory, out bool created)
    {
        var path = Path.Combine(directory, FileName);
        created = !File.Exists(path);
        if (created)
        {
            var key = RandomNumberGenerator.GetBytes(KeyBytes);
            Write(path, key);
            return key;
        }
        var content = File.ReadAllBytes(path);
        try
        {
            if (content.Length != Header.Length + KeyBytes || !content.AsSpan(0, Header.Length).SequenceEqual(Header))
                throw new InvalidDataException(
                    $"crypt: the key file {path} is not one this handler wrote ({content.Length} bytes, expected {Header.Length + KeyBytes} starting 'hrt-crypt xts-aes-256 v1'); " +
                    "the data on the device cannot be read without its key. Restore the file from a backup, or remove it to start over with a new key (the old data is then lost).");
            if ((File.GetUnixFileMode(path) & ~OwnerOnly) != 0)
                File.SetUnixFileMode(path, OwnerOnly); // only its owner may read a key
            return content.AsSpan(Header.Length).ToArray();
        }
        finally
        {
            CryptographicOperations.ZeroMemory(content);
        }
    }

    /// <summary>Replaces the key file with <paramref name="key"/>; durable when it returns.</summary>
    public static void Write(string path, ReadOnlySpan<byte> key)
    {
        var content = new byte[Header.Length + KeyBytes];
        try
        {
            Header.CopyTo(content, 0);
            key.CopyTo(content.AsSpan(Header.Length));
            DurableFile.Replace(path, content, OwnerOnly);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(content);
        }
    }
}
