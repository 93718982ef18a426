using HandlerRuntime.Cli;

return await CliApp.Build(CliApp.ServeAsync).Parse(args).InvokeAsync();
