using HandlerRuntime.Cli;

var root = CliApp.Build(CliApp.ServeAsync);
if (HandlerVerbs.Applies(root, args))
    return await HandlerVerbs.RunAsync(args);
return await root.Parse(args).InvokeAsync();
