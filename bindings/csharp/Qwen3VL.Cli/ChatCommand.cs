using Qwen3VL.Native;

namespace Qwen3VL.Cli;

/// <summary>
/// <c>qwen3vl chat</c>: an interactive conversation on stdin/stdout. Each line is a message; answers stream to stdout, and
/// everything else (prompt marker, notes, errors) goes to stderr, so stdout holds the answers only. Ctrl-C during an
/// answer stops the answer; Ctrl-C at the prompt (or end of input, or /exit) ends the program.
/// </summary>
internal static class ChatCommand
{
    internal const string Usage =
        "usage: qwen3vl chat [--model DIR] [--image FILE]... [options]\n" +
        "  type a message and press Enter; commands:\n" +
        "    /image PATH   attach an image to the next message (repeatable)\n" +
        "    /reset        forget the conversation\n" +
        "    /exit         quit (also Ctrl-D, or Ctrl-C at the prompt)\n" +
        "  Ctrl-C while an answer is written stops that answer.\n" +
        "  --image FILE         attach an image to the first message\n" +
        CliOptions.CommonUsage;

    private const string Help = "commands: /image PATH (attach to the next message), /reset, /exit";

    internal static int Run(string[] args)
    {
        CliOptions o = CliOptions.Parse(args);
        string modelDir = o.ResolveModelDirectory("chat");
        if (!Directory.Exists(modelDir)) throw new UserErrorException($"model folder '{modelDir}' does not exist.");
        var pending = o.Images.Select(CliOptions.ReadImage).ToList();

        using Qwen3VLModel model = o.LoadModel(modelDir);
        using Qwen3VLChatSession session = model.CreateSession(new ChatSessionOptions { SystemPrompt = o.System });
        GenerationOptions generation = o.BuildGeneration(model);
        bool interactive = !Console.IsInputRedirected;
        if (interactive) Console.Error.WriteLine($"{model.ModelId} on {model.DeviceName}; {Help}.");

        CancellationTokenSource? answering = null;
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            CancellationTokenSource? current = Volatile.Read(ref answering);
            if (current is null) return; // at the prompt: let Ctrl-C end the program
            e.Cancel = true;
            current.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        using Stream stdout = Console.OpenStandardOutput();
        var writer = new StreamWriter(stdout, new System.Text.UTF8Encoding(false)) { AutoFlush = true };
        try
        {
            while (true)
            {
                if (interactive) Console.Error.Write(pending.Count == 0 ? "> " : $"[{pending.Count} image(s)] > ");
                string? line = Console.ReadLine();
                if (line is null) return 0;
                line = line.Trim();
                if (line.Length == 0) continue;
                if (line.StartsWith('/'))
                {
                    if (!Command(line, session, pending)) return 0;
                    continue;
                }

                using var cts = new CancellationTokenSource();
                Volatile.Write(ref answering, cts);
                var wrote = new System.Runtime.CompilerServices.StrongBox<bool>();
                try
                {
                    Answer(session, line, pending, generation, writer, wrote, cts.Token).GetAwaiter().GetResult();
                    pending.Clear();
                }
                catch (OperationCanceledException)
                {
                    writer.WriteLine();
                    Console.Error.WriteLine("(answer stopped)");
                    pending.Clear();
                }
                catch (Exception e)
                {
                    // Refused or failed: the conversation stays (a refused message is not added; a failed answer keeps
                    // what it had written), the attached images are dropped, and the next line can be typed.
                    if (wrote.Value) writer.WriteLine(); // end the partial answer's line
                    Console.Error.WriteLine(Program.Describe(e).Text + (pending.Count > 0 ? $" ({pending.Count} attached image(s) dropped)" : ""));
                    pending.Clear();
                }
                finally
                {
                    Volatile.Write(ref answering, null);
                }
            }
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static async Task Answer(Qwen3VLChatSession session, string text, List<ChatImage> images, GenerationOptions options,
        TextWriter writer, System.Runtime.CompilerServices.StrongBox<bool> wrote, CancellationToken cancellationToken)
    {
        await foreach (string piece in session.SendStreamingAsync(text, images.ToArray(), options, cancellationToken).ConfigureAwait(false))
        {
            writer.Write(piece);
            wrote.Value = true;
        }
        writer.WriteLine();
    }

    /// <summary>Runs a /command; returns false to quit.</summary>
    private static bool Command(string line, Qwen3VLChatSession session, List<ChatImage> pending)
    {
        int space = line.IndexOf(' ');
        string name = space < 0 ? line : line[..space];
        string argument = space < 0 ? "" : line[(space + 1)..].Trim();
        switch (name)
        {
            case "/exit":
            case "/quit":
                return false;
            case "/reset":
                session.Reset();
                pending.Clear();
                Console.Error.WriteLine("(conversation cleared)");
                return true;
            case "/image":
                if (argument.Length == 0)
                {
                    Console.Error.WriteLine("usage: /image PATH");
                    return true;
                }
                try
                {
                    ChatImage image = CliOptions.ReadImage(argument.Trim('"'));
                    pending.Add(image);
                    Console.Error.WriteLine($"(image {image} attached to the next message)");
                }
                catch (UserErrorException e)
                {
                    Console.Error.WriteLine("error: " + e.Message);
                }
                return true;
            case "/help":
                Console.Error.WriteLine(Help);
                return true;
            default:
                Console.Error.WriteLine($"unknown command {name}; {Help}");
                return true;
        }
    }
}
