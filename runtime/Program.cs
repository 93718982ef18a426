using HandlerRuntime.Cli;

// SIGTERM and SIGINT are the daemon's own to handle (CliApp.ServeAsync): System.CommandLine's
// default would end the process two seconds after the signal, in the middle of a clean stop
// (TCMU devices blocked and drained, LUNs flushed and closed).
var root = CliApp.Build(CliApp.ServeAsync);
if (HandlerVerbs.Applies(root, args))
    return await HandlerVerbs.RunAsync(args);
return await root.Parse(args).InvokeAsync(new System.CommandLine.InvocationConfiguration { ProcessTerminationTimeout = null });
