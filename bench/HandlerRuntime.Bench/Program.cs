using BenchmarkDotNet.Running;

namespace HandlerRuntime.Bench;

public static class Program
{
    // `-- --filter '*'` runs everything; `-- --filter '*Core*'` one class; `-- --list flat` lists them.
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
