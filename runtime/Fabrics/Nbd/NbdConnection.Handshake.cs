using System.Buffers;
using System.Text;
using HandlerRuntime.Buffers;

namespace HandlerRuntime.Fabrics.Nbd;

// Fixed newstyle negotiation (proto.md "Handshake"; fabrics-tcmu-nbd.md 3.1, 3.7): the
// greeting, the client's flags, then one option at a time until GO or EXPORT_NAME starts
// transmission. Errors in an option are answered and negotiation goes on; a broken frame, an
// unknown client flag or too many options end the connection.
internal sealed partial class NbdConnection
{
    /// <summary>Option data larger than this ends the connection (no option of this server needs more; nbdkit allows 64 MiB).</summary>
    private const int MaxOptionLength = 64 * 1024;

    private readonly ArrayBufferWriter<byte> replies = new(1024);
    private bool fixedNewstyle;
    private bool noZeroes;
    private string? metaExport;       // SET_META_CONTEXT applies only to a GO for the same name
    private bool metaBaseAllocation;

    private enum OptionOutcome { Continue, Transmission, Abort }

    /// <summary>Negotiates; true when transmission starts, false when the client aborted.</summary>
    private async Task<bool> NegotiateAsync(CancellationToken ct)
    {
        if (!Options.Allow.Allows(RemoteAddress))
            throw new NbdProtocolException($"{RemoteAddress} is not in nbd.allow");
        var greeting = new byte[NbdProtocol.GreetingLength];
        NbdProtocol.Put64(greeting, 0, NbdProtocol.NbdMagic);
        NbdProtocol.Put64(greeting, 8, NbdProtocol.OptionMagic);
        NbdProtocol.Put16(greeting, 16, NbdProtocol.FlagFixedNewstyle | NbdProtocol.FlagNoZeroes);
        await stream.WriteAsync(greeting, ct);

        var word = new byte[4];
        await receiver.ReadExactAsync(word, ct);
        var clientFlags = NbdProtocol.U32(word, 0);
        if ((clientFlags & ~(NbdProtocol.ClientFixedNewstyle | NbdProtocol.ClientNoZeroes)) != 0)
            throw new NbdProtocolException($"client flags 0x{clientFlags:x8} set bits this server did not offer");
        fixedNewstyle = (clientFlags & NbdProtocol.ClientFixedNewstyle) != 0;
        noZeroes = (clientFlags & NbdProtocol.ClientNoZeroes) != 0;

        var header = new byte[NbdProtocol.OptionHeaderLength];
        var budget = Options.MaxOptions;
        for (var count = 0; ; count++)
        {
            if (count >= budget)
                throw new NbdProtocolException($"more than {budget} options without choosing an export (nbd.maxOptions)");
            await receiver.ReadExactAsync(header, ct);
            if (NbdProtocol.U64(header, NbdProtocol.OptionMagicAt) != NbdProtocol.OptionMagic)
                throw new NbdProtocolException($"an option starts with 0x{NbdProtocol.U64(header, 0):x16}, not IHAVEOPT");
            var option = (NbdOption)NbdProtocol.U32(header, NbdProtocol.OptionCodeAt);
            var length = NbdProtocol.U32(header, NbdProtocol.OptionLengthAt);
            if (length > MaxOptionLength)
                throw new NbdProtocolException($"option {option} carries {length} bytes, more than {MaxOptionLength}");
            using var data = BufferPool.Shared.Rent((int)length);
            await receiver.ReadExactAsync(data.Memory, ct);
            var (outcome, listed) = await OptionAsync(option, data.Memory, ct);
            budget += listed; // as nbdkit: a LIST earns one more option per export it showed
            if (outcome != OptionOutcome.Continue)
                return outcome == OptionOutcome.Transmission;
        }
    }

    private async Task<(OptionOutcome, int Listed)> OptionAsync(NbdOption option, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var listed = 0;
        var outcome = OptionOutcome.Continue;
        if (fabric.Stopping && option != NbdOption.Abort)
        {
            Error(option, NbdReply.ErrShutdown, "the server is shutting down");
        }
        else if (option == NbdOption.ExportName)
        {
            if (Options.Tls is { Required: true } && !TlsActive)
                throw new NbdProtocolException("EXPORT_NAME before STARTTLS, but nbd.tls.required is set");
            // EXPORT_NAME cannot be refused politely: an unknown export ends the connection.
            var name = ReadName(data.Span) ?? throw new NbdProtocolException("EXPORT_NAME with a name that is not valid UTF-8 text");
            var (export, _, why) = NbdExports.Find(fabric.Targets, Options, RemoteAddress, name);
            if (export is null)
                throw new NbdProtocolException($"EXPORT_NAME '{name}': {why}");
            Begin(export, name);
            var reply = new byte[NbdProtocol.ExportNameReplyLength + (noZeroes ? 0 : NbdProtocol.ExportNameReplyZeroes)];
            NbdProtocol.Put64(reply, 0, (ulong)Size);
            NbdProtocol.Put16(reply, 8, (ushort)TransmissionFlags);
            await stream.WriteAsync(reply, ct);
            return (OptionOutcome.Transmission, 0);
        }
        else if (Options.Tls is { Required: true } && !TlsActive && option is not (NbdOption.StartTls or NbdOption.Abort))
        {
            Error(option, NbdReply.ErrTlsRequired, "this server requires TLS: send NBD_OPT_STARTTLS first");
        }
        else if (!fixedNewstyle)
        {
            Error(option, NbdReply.ErrInvalid, "only EXPORT_NAME is allowed without fixed newstyle negotiation");
        }
        else
        {
            switch (option)
            {
                case NbdOption.Abort:
                    Reply(option, NbdReply.Ack, default);
                    outcome = OptionOutcome.Abort;
                    break;
                case NbdOption.List:
                    listed = List(data.Span);
                    break;
                case NbdOption.StartTls:
                    await StartTlsAsync(data.Span.Length, ct);
                    return (OptionOutcome.Continue, 0);
                case NbdOption.Info:
                case NbdOption.Go:
                    if (InfoOrGo(option, data.Span))
                        outcome = OptionOutcome.Transmission;
                    break;
                case NbdOption.StructuredReply:
                    if (data.Length != 0)
                        Error(option, NbdReply.ErrInvalid, "STRUCTURED_REPLY carries no data");
                    else if (StructuredReplies)
                        Error(option, NbdReply.ErrInvalid, "structured replies are already on");
                    else
                    {
                        StructuredReplies = true;
                        Reply(option, NbdReply.Ack, default);
                    }
                    break;
                case NbdOption.ListMetaContext:
                case NbdOption.SetMetaContext:
                    MetaContext(option, data.Span);
                    break;
                default:
                    Error(option, NbdReply.ErrUnsupported, $"option {(uint)option} is not supported");
                    break;
            }
        }
        await SendRepliesAsync(ct);
        return (outcome, listed);
    }

    /// <summary>NBD_OPT_LIST: one SERVER reply (name, description) per export this client may use.</summary>
    private int List(ReadOnlySpan<byte> data)
    {
        if (data.Length != 0)
        {
            Error(NbdOption.List, NbdReply.ErrInvalid, "LIST carries no data");
            return 0;
        }
        var exports = NbdExports.List(fabric.Targets, Options, RemoteAddress);
        foreach (var e in exports)
        {
            var name = Encoding.UTF8.GetBytes(e.Name);
            var description = Encoding.UTF8.GetBytes(e.Description);
            var p = new byte[4 + name.Length + description.Length];
            NbdProtocol.Put32(p, 0, (uint)name.Length);
            name.CopyTo(p, 4);
            description.CopyTo(p, 4 + name.Length);
            Reply(NbdOption.List, NbdReply.Server, p);
        }
        Reply(NbdOption.List, NbdReply.Ack, default);
        return exports.Count;
    }

    /// <summary>NBD_OPT_INFO and NBD_OPT_GO: INFO_EXPORT always, NAME, DESCRIPTION and BLOCK_SIZE when asked, then ACK.</summary>
    private bool InfoOrGo(NbdOption option, ReadOnlySpan<byte> data)
    {
        // u32 name length, name, u16 number of requests, that many u16 requests; nothing more (nbdkit checks the same).
        var nameLength = data.Length < 6 ? uint.MaxValue : NbdProtocol.U32(data, 0);
        var n = nameLength <= data.Length - 6 ? NbdProtocol.U16(data, 4 + (int)nameLength) : -1;
        if (n < 0 || data.Length != 4 + nameLength + 2 + 2 * n)
        {
            Error(option, NbdReply.ErrInvalid, $"{option} data is not name length, name, count, requests");
            return false;
        }
        var name = ReadName(data.Slice(4, (int)nameLength));
        if (name is null)
        {
            Error(option, NbdReply.ErrInvalid, "the export name is not valid UTF-8 text");
            return false;
        }
        var (export, refusal, why) = NbdExports.Find(fabric.Targets, Options, RemoteAddress, name);
        if (export is null)
        {
            Error(option, refusal, why);
            return false;
        }
        bool wantName = false, wantDescription = false, wantBlockSize = false;
        for (var i = 0; i < n; i++)
        {
            switch ((NbdInfo)NbdProtocol.U16(data, 4 + (int)nameLength + 2 + 2 * i))
            {
                case NbdInfo.Name: wantName = true; break;
                case NbdInfo.Description: wantDescription = true; break;
                case NbdInfo.BlockSize: wantBlockSize = true; break;
                // Unknown requests are ignored; EXPORT is always sent.
            }
        }
        var exportInfo = new byte[12];
        NbdProtocol.Put16(exportInfo, 0, (ushort)NbdInfo.Export);
        NbdProtocol.Put64(exportInfo, 2, (ulong)export.SizeBytes);
        NbdProtocol.Put16(exportInfo, 10, (ushort)export.Flags(StructuredReplies));
        Reply(option, NbdReply.Info, exportInfo);
        if (wantName)
            Reply(option, NbdReply.Info, InfoText(NbdInfo.Name, export.Name));
        if (wantDescription)
            Reply(option, NbdReply.Info, InfoText(NbdInfo.Description, export.Description));
        if (wantBlockSize)
        {
            var (min, preferred, max) = export.BlockSizes(Options.MaxRequestBytes);
            var b = new byte[14];
            NbdProtocol.Put16(b, 0, (ushort)NbdInfo.BlockSize);
            NbdProtocol.Put32(b, 2, min);
            NbdProtocol.Put32(b, 6, preferred);
            NbdProtocol.Put32(b, 10, max);
            Reply(option, NbdReply.Info, b);
        }
        Reply(option, NbdReply.Ack, default);
        if (option != NbdOption.Go)
            return false;
        Begin(export, name);
        return true;
    }

    private static byte[] InfoText(NbdInfo type, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var p = new byte[2 + Math.Min(bytes.Length, NbdProtocol.MaxStringLength)];
        NbdProtocol.Put16(p, 0, (ushort)type);
        bytes.AsSpan(0, p.Length - 2).CopyTo(p.AsSpan(2));
        return p;
    }

    /// <summary>
    /// LIST_META_CONTEXT and SET_META_CONTEXT: u32 name length, name, u32 query count, then each
    /// query as u32 length and text. The one context offered is base:allocation (a "base:"
    /// query lists it too); unknown namespaces are ignored, as the protocol asks.
    /// </summary>
    private void MetaContext(NbdOption option, ReadOnlySpan<byte> data)
    {
        if (!StructuredReplies)
        {
            Error(option, NbdReply.ErrInvalid, "meta contexts need structured replies first");
            return;
        }
        string? Text(ReadOnlySpan<byte> d, ref int at)
        {
            if (d.Length - at < 4)
                return null;
            var len = NbdProtocol.U32(d, at);
            if (len > d.Length - at - 4)
                return null;
            var s = ReadName(d.Slice(at + 4, (int)len));
            at += 4 + (int)len;
            return s;
        }
        var at = 0;
        var export = Text(data, ref at);
        if (export is null || data.Length - at < 4)
        {
            Error(option, NbdReply.ErrInvalid, $"{option} data is not name length, name, count, queries");
            return;
        }
        var count = NbdProtocol.U32(data, at);
        at += 4;
        var matched = count == 0 && option == NbdOption.ListMetaContext; // no query: list everything
        for (var i = 0; i < count; i++)
        {
            var query = Text(data, ref at);
            if (query is null)
            {
                Error(option, NbdReply.ErrInvalid, $"{option} query {i} overruns the option");
                return;
            }
            matched |= query == NbdMetaContext.BaseAllocation || (option == NbdOption.ListMetaContext && query == "base:");
        }
        if (at != data.Length)
        {
            Error(option, NbdReply.ErrInvalid, $"{option} carries {data.Length - at} bytes after its queries");
            return;
        }
        if (option == NbdOption.SetMetaContext)
        {
            metaExport = export; // replaces any earlier selection
            metaBaseAllocation = matched;
        }
        if (matched)
        {
            var name = Encoding.UTF8.GetBytes(NbdMetaContext.BaseAllocation);
            var p = new byte[4 + name.Length];
            NbdProtocol.Put32(p, 0, option == NbdOption.SetMetaContext ? NbdMetaContext.BaseAllocationId : 0);
            name.CopyTo(p, 4);
            Reply(option, NbdReply.MetaContext, p);
        }
        Reply(option, NbdReply.Ack, default);
    }

    /// <summary>NBD_OPT_STARTTLS: ACK, then the TLS handshake; everything negotiated before is forgotten.</summary>
    private async Task StartTlsAsync(int dataLength, CancellationToken ct)
    {
        if (dataLength != 0)
            Error(NbdOption.StartTls, NbdReply.ErrInvalid, "STARTTLS carries no data");
        else if (TlsActive)
            Error(NbdOption.StartTls, NbdReply.ErrInvalid, "TLS is already on");
        else if (tls is null)
            Error(NbdOption.StartTls, NbdReply.ErrPolicy, "TLS is not configured on this server (nbd.tls)");
        else
        {
            Reply(NbdOption.StartTls, NbdReply.Ack, default);
            await SendRepliesAsync(ct);
            var ssl = await tls.AuthenticateAsync(network, ct);
            stream = ssl;
            receiver.Stream = ssl;
            TlsActive = true;
            ClientCertificate = NbdTls.ClientSubject(ssl);
            StructuredReplies = false;
            metaExport = null;
            metaBaseAllocation = false;
            Log.Debug("NBD {Remote}: TLS {Protocol} {Cipher}{Client}", RemoteText, ssl.SslProtocol, ssl.NegotiatedCipherSuite,
                ClientCertificate is null ? "" : ", client " + ClientCertificate);
            return;
        }
        await SendRepliesAsync(ct);
    }

    /// <summary>Transmission starts on <paramref name="export"/>: the nexus, the flags and the reply writer.</summary>
    private void Begin(NbdExport export, string requestedName)
    {
        Export = export;
        RequestedName = requestedName;
        Size = export.SizeBytes;
        TransmissionFlags = export.Flags(StructuredReplies);
        BaseAllocation = StructuredReplies && metaBaseAllocation && metaExport == requestedName;
        Nexus = fabric.NexusFor(export.Target, Slot);
        phase = "transmission";
        Log.Information("NBD {Remote}: export {Export} ({Size} bytes, {Flags}{Structured}{Tls})", RemoteText, export.Name, Size, TransmissionFlags,
            StructuredReplies ? ", structured replies" : "", TlsActive ? ", TLS" : "");
    }

    // ---- option replies ----

    private void Reply(NbdOption option, NbdReply type, ReadOnlySpan<byte> data)
    {
        var h = replies.GetSpan(NbdProtocol.OptionReplyHeaderLength + data.Length);
        NbdProtocol.Put64(h, 0, NbdProtocol.OptionReplyMagic);
        NbdProtocol.Put32(h, NbdProtocol.OptionReplyOptionAt, (uint)option);
        NbdProtocol.Put32(h, NbdProtocol.OptionReplyTypeAt, (uint)type);
        NbdProtocol.Put32(h, NbdProtocol.OptionReplyLengthAt, (uint)data.Length);
        data.CopyTo(h[NbdProtocol.OptionReplyHeaderLength..]);
        replies.Advance(NbdProtocol.OptionReplyHeaderLength + data.Length);
    }

    /// <summary>An error reply with a message for the user (proto.md allows UTF-8 text in every error).</summary>
    private void Error(NbdOption option, NbdReply type, string message)
    {
        Log.Debug("NBD {Remote}: option {Option} refused with {Reply}: {Message}", RemoteText, option, type, message);
        Reply(option, type, Encoding.UTF8.GetBytes(message));
    }

    private async ValueTask SendRepliesAsync(CancellationToken ct)
    {
        if (replies.WrittenCount == 0)
            return;
        await stream.WriteAsync(replies.WrittenMemory, ct);
        replies.ResetWrittenCount();
    }

    /// <summary>A protocol string: UTF-8, no NUL, at most 4096 bytes; null otherwise.</summary>
    private static string? ReadName(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > NbdProtocol.MaxStringLength || bytes.Contains((byte)0))
            return null;
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }
}
