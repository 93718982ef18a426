using HandlerRuntime.Cli;

// SIGTERM and SIGINT are the daemon's own to handle (CliApp.ServeAsync): System.CommandLine's
// default would end the process two seconds after the signal, in the middle of a clean stop
// (TCMU devices blocked and drained, LUNs flushed and closed).
return await CliApp.Build(CliApp.ServeAsync).Parse(args).InvokeAsync(new System.CommandLine.InvocationConfiguration { ProcessTerminationTimeout = null });
