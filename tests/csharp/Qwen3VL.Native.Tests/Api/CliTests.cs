using System.Diagnostics;
using System.Reflection;
using System.Text;
using System.Text.Json;

namespace Qwen3VL.Native.Tests.Api;

/// <summary>The <c>qwen3vl</c> tool as a user drives it: <c>chat</c> through its stdin, <c>run --json</c>, and the exit codes of user errors.</summary>
public sealed class CliTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string CliPath
    {
        get
        {
            string? path = Environment.GetEnvironmentVariable("QWEN3VL_CLI_PATH")
                ?? typeof(CliTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "Qwen3VLCliPath").Value;
            Assert.True(File.Exists(path), $"The qwen3vl tool was not built at '{path}' (set QWEN3VL_CLI_PATH).");
            return path!;
        }
    }

    private sealed record Result(int ExitCode, string Stdout, string Stderr);

    /// <summary>Runs <c>dotnet qwen3vl.dll ARGS</c>, writing <paramref name="stdinLines"/> one by one; stdin then stays open
    /// (so the program must exit by itself) unless <paramref name="closeStdin"/>.</summary>
    private static async Task<Result> RunCli(IEnumerable<string> args, IEnumerable<string>? stdinLines = null, bool closeStdin = false,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = new UTF8Encoding(false),
            StandardErrorEncoding = new UTF8Encoding(false),
            StandardInputEncoding = new UTF8Encoding(false),
        };
        start.ArgumentList.Add(CliPath);
        foreach ((string name, string value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        foreach (string a in args) start.ArgumentList.Add(a);
        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(Ct), stderr = process.StandardError.ReadToEndAsync(Ct);
        foreach (string line in stdinLines ?? [])
        {
            await process.StandardInput.WriteLineAsync(line.AsMemory(), Ct);
            await process.StandardInput.FlushAsync(Ct);
        }
        if (closeStdin) process.StandardInput.Close();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        return new Result(process.ExitCode, await stdout, await stderr);
    }

    [Fact]
    public async Task ChatAnswersKeepsHistoryResetsAndExits()
    {
        string model = ApiModels.TinyDirectory;
        Result r = await RunCli(["chat", "--model", model, "--temperature", "0", "--max-tokens", "6"],
            ["Hello", "And again?", "/reset", "Hello", "/image /no/such/image.png", "/exit"]);

        // The same conversation through the API: greedy answers are deterministic.
        using Qwen3VLChatSession session = ApiModels.Tiny.CreateSession();
        var options = new GenerationOptions { Sampling = SamplingOptions.Greedy, MaxNewTokens = 6 };
        string first = (await session.SendAsync("Hello", null, options, Ct)).Text;
        string second = (await session.SendAsync("And again?", null, options, Ct)).Text;

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(first + "\n" + second + "\n" + first + "\n", r.Stdout);
        Assert.Contains("(conversation cleared)", r.Stderr);
        Assert.Contains("cannot read image '/no/such/image.png'", r.Stderr);
    }

    [Fact]
    public async Task ChatEndsAtEndOfInputAndAttachesImages()
    {
        Result r = await RunCli(["chat", "--model", ApiModels.TinyDirectory, "--temperature", "0", "--max-tokens", "3"],
            ["/image " + ApiModels.ImagePath(), "What is it?"], closeStdin: true);

        using Qwen3VLChatSession session = ApiModels.Tiny.CreateSession();
        var options = new GenerationOptions { Sampling = SamplingOptions.Greedy, MaxNewTokens = 3 };
        string answer = (await session.SendAsync("What is it?", [ChatImage.FromFile(ApiModels.ImagePath())], options, Ct)).Text;

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("attached to the next message", r.Stderr);
        Assert.Equal(answer + "\n", r.Stdout);
    }

    [Fact]
    public async Task RunJsonReportsAnswerAndUsage()
    {
        Result r = await RunCli(["run", "--model", ApiModels.TinyDirectory, "--image", ApiModels.ImagePath(), "--prompt", "Describe.",
            "--temperature", "0", "--max-tokens", "5", "--json"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using JsonDocument doc = JsonDocument.Parse(r.Stdout);
        JsonElement root = doc.RootElement;
        Assert.Equal(5, root.GetProperty("completionTokens").GetInt32());
        Assert.True(root.GetProperty("promptTokens").GetInt32() > ApiModels.Tiny.ImageProcessor.GetTokenCount(200, 300));
        Assert.Equal("MaxTokens", root.GetProperty("stopReason").GetString());
        Assert.Equal(JsonValueKind.String, root.GetProperty("text").ValueKind);
    }

    /// <summary>--no-graphs (and the environment variable QWEN3VL_NO_GRAPHS=1 that scripts use) is accepted by run, serve's
    /// shared parser and bench; on the CPU it changes nothing but must not be refused.</summary>
    [Theory]
    [InlineData("run-flag")]
    [InlineData("run-env")]
    [InlineData("bench-flag")]
    [InlineData("bench-env")]
    public async Task NoGraphsIsAcceptedAsAFlagAndFromTheEnvironment(string kind)
    {
        bool bench = kind.StartsWith("bench", StringComparison.Ordinal);
        var args = new List<string>(bench
            ? ["bench", "--model", ApiModels.TinyDirectory, "--prompt-tokens", "8", "--new-tokens", "3", "--image-size", "0"]
            : ["run", "--model", ApiModels.TinyDirectory, "--prompt", "Hi.", "--temperature", "0", "--max-tokens", "3", "--json"]);
        Dictionary<string, string>? env = null;
        if (kind.EndsWith("-flag", StringComparison.Ordinal)) args.Add("--no-graphs");
        else env = new() { ["QWEN3VL_NO_GRAPHS"] = "1" };
        Result r = await RunCli(args, environment: env);
        Assert.True(r.ExitCode == 0, r.Stderr);
        if (bench) Assert.Contains("| decode (2 greedy tokens after the first)", r.Stdout);
        else Assert.Equal(3, JsonDocument.Parse(r.Stdout).RootElement.GetProperty("completionTokens").GetInt32());
    }

    /// <summary>--kv takes each format: bench names the one its caches have (auto is f32 on the CPU) and their bytes (a context
    /// of 8 + 2 + 1 tokens, 3 layers x K and V of 2 kv heads x 32: 4 bytes an element, 2, or 17/16), and run answers with it.</summary>
    [Theory]
    [InlineData("auto", "f32", 16896)]
    [InlineData("f32", "f32", 16896)]
    [InlineData("bf16", "bf16", 8448)]
    [InlineData("q8", "q8", 4488)]
    [InlineData("Q8", "q8", 4488)]
    public async Task KvTakesEachFormat(string value, string format, int bytes)
    {
        Result bench = await RunCli(["bench", "--model", ApiModels.TinyDirectory, "--prompt-tokens", "8", "--new-tokens", "2", "--image-size", "0", "--kv", value]);
        Assert.True(bench.ExitCode == 0, bench.Stderr);
        Assert.Contains($"lm_head; KV cache {format}\n", bench.Stdout);
        Assert.Contains($"KV cache ({format}, {bytes} bytes)", bench.Stdout);
        Result run = await RunCli(["run", "--model", ApiModels.TinyDirectory, "--prompt", "Hi.", "--temperature", "0", "--max-tokens", "3", "--json", "--kv", value]);
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal(3, JsonDocument.Parse(run.Stdout).RootElement.GetProperty("completionTokens").GetInt32());
    }

    /// <summary>A value of --kv that is not a format, and q8 for a checkpoint whose head_dim (tiny-untied: 16) is not a multiple of
    /// 32: exit code 2, one line naming --kv, on every command that takes it.</summary>
    [Theory]
    [InlineData("run", "q4", "--kv: 'q4' is not one of auto, f32, bf16, q8.")]
    [InlineData("chat", "", "--kv: '' is not one of auto, f32, bf16, q8.")]
    [InlineData("serve", "fp8", "--kv: 'fp8' is not one of auto, f32, bf16, q8.")]
    [InlineData("bench", "int8", "--kv: 'int8' is not one of auto, f32, bf16, q8.")]
    [InlineData("run", "q8", "--kv q8: KvCache = Q8 needs the text decoder's head_dim to be a multiple of 32")]
    [InlineData("bench", "q8", "--kv q8: KvCache = Q8 needs the text decoder's head_dim to be a multiple of 32")]
    public async Task KvRefusesABadValueAndAnImpossibleFormatByName(string command, string value, string message)
    {
        string untied = Path.Combine(Processing.TestPaths.RepoRoot, "tests", "fixtures", "tiny-untied", "model");
        string[] args = command == "bench"
            ? ["bench", "--model", untied, "--prompt-tokens", "8", "--new-tokens", "2", "--image-size", "0", "--kv", value]
            : command == "run" ? ["run", "--model", untied, "--prompt", "hi", "--max-tokens", "2", "--kv", value]
            : [command, "--model", untied, "--kv", value];
        Result r = await RunCli(args, closeStdin: true);
        Assert.True(r.ExitCode == 2, $"exit {r.ExitCode}: {r.Stderr}");
        Assert.Contains(message, r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.Equal("", r.Stdout);
    }

    [Theory]
    [InlineData("missing-model")]
    [InlineData("unreadable-image")]
    [InlineData("prompt-too-long")]
    [InlineData("bad-option")]
    public async Task UserErrorsExitWithCode2AndAMessage(string kind)
    {
        string broken = Path.Combine(Path.GetTempPath(), "qwen3vl-not-an-image.png");
        await File.WriteAllBytesAsync(broken, [1, 2, 3], Ct);
        (string[] args, string message) = kind switch
        {
            "missing-model" => (new[] { "run", "--model", "/no/such/model", "--prompt", "hi" }, "does not exist"),
            "unreadable-image" => (["run", "--model", ApiModels.TinyDirectory, "--image", broken, "--prompt", "hi"], "cannot read image"),
            "prompt-too-long" => (["run", "--model", ApiModels.TinyDirectory, "--context", "8", "--prompt", "a somewhat long prompt"], "the prompt has"),
            _ => (["run", "--frobnicate"], "unknown option"),
        };
        Result r = await RunCli(args);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(message, r.Stderr);
        Assert.Equal("", r.Stdout);
    }

    /// <summary>One line on stderr, no stack trace, no "Unhandled exception".</summary>
    private static void AssertOneCleanLine(Result r)
    {
        string[] lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => !l.StartsWith("loading", StringComparison.Ordinal) && !l.Contains('\r')).ToArray();
        Assert.DoesNotContain("Unhandled", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.True(lines.Length >= 1 && lines[^1].StartsWith("qwen3vl run: error: ", StringComparison.Ordinal), r.Stderr);
    }

    // The hostile-input sweep's CLI cases (issue 12): each ended in "Unhandled exception", a stack trace and exit code 134.
    [Theory]
    [InlineData("empty-tokenizer", "is not a usable Qwen tokenizer")]
    [InlineData("object-tokenizer", "is not a usable Qwen tokenizer")]
    [InlineData("garbage-tokenizer", "is not a usable Qwen tokenizer")]
    [InlineData("wide-image", "aspect ratio")]
    [InlineData("image-pad-in-prompt", "<|image_pad|>")]
    [InlineData("video-pad-in-prompt", "<|video_pad|>")]
    [InlineData("huge-min-pixels", "--min-pixels")]
    public async Task RefusedInputExitsWithCode2AndOneLine(string kind, string message)
    {
        string temp = Path.Combine(Path.GetTempPath(), "qwen3vl-cli-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(temp);
        try
        {
            string model = ApiModels.TinyDirectory;
            string[] extra = [];
            string prompt = "hi";
            if (kind.EndsWith("-tokenizer", StringComparison.Ordinal))
            {
                model = Path.Combine(temp, "model");
                Directory.CreateDirectory(model);
                foreach (string f in Directory.GetFiles(ApiModels.TinyDirectory)) File.Copy(f, Path.Combine(model, Path.GetFileName(f)));
                await File.WriteAllTextAsync(Path.Combine(model, "tokenizer.json"),
                    kind == "empty-tokenizer" ? "" : kind == "object-tokenizer" ? "{}" : "garbage \u0001", Ct);
            }
            else if (kind == "wide-image")
            {
                string wide = Path.Combine(temp, "wide.png");
                await File.WriteAllBytesAsync(wide, Processing.Images.TestImageWriter.Png(100_000, 1, 2, 8, new byte[300_000]), Ct);
                extra = ["--image", wide];
            }
            else if (kind == "image-pad-in-prompt") prompt = "what is <|image_pad|>?";
            else if (kind == "video-pad-in-prompt") prompt = "what is <|video_pad|>?";
            else extra = ["--min-pixels", "99999999999"];

            Result r = await RunCli(["run", "--model", model, "--prompt", prompt, "--max-tokens", "2", .. extra]);
            Assert.True(r.ExitCode == 2, $"exit {r.ExitCode}: {r.Stderr}");
            Assert.Contains(message, r.Stderr);
            AssertOneCleanLine(r);
            Assert.Equal("", r.Stdout);
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
    }

    [Fact]
    public async Task NaNLogitsExitWithCode1AndANamedError()
    {
        string dir = HostileInputTests.NaNCheckpoint();
        try
        {
            // The checkpoint's defaults sample with top-p 0.8: the busy loop of the sweep.
            Result r = await RunCli(["run", "--model", dir, "--prompt", "hi", "--max-tokens", "4"]);
            Assert.True(r.ExitCode == 1, $"exit {r.ExitCode}: {r.Stderr}");
            Assert.Contains("NaN", r.Stderr);
            Assert.Contains("step 1", r.Stderr);
            AssertOneCleanLine(r);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task ChatReportsARefusedMessageAndKeepsTheConversation()
    {
        Result r = await RunCli(["chat", "--model", ApiModels.TinyDirectory, "--temperature", "0", "--max-tokens", "3"],
            ["Hello", "look <|image_pad|>", "And again?"], closeStdin: true);

        using Qwen3VLChatSession session = ApiModels.Tiny.CreateSession();
        var options = new GenerationOptions { Sampling = SamplingOptions.Greedy, MaxNewTokens = 3 };
        string first = (await session.SendAsync("Hello", null, options, Ct)).Text;
        string second = (await session.SendAsync("And again?", null, options, Ct)).Text; // the refused line left no trace

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("<|image_pad|>", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.Equal(first + "\n" + second + "\n", r.Stdout);
    }
}
