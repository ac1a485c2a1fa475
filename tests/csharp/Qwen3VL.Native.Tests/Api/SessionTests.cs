namespace Qwen3VL.Native.Tests.Api;

/// <summary>The conversation API on the tiny checkpoint: streaming, usage, cancellation, cache reuse, images, concurrency.</summary>
public sealed class SessionTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task StreamingEqualsNonStreaming()
    {
        using Qwen3VLChatSession streaming = ApiModels.Tiny.CreateSession(), whole = ApiModels.Tiny.CreateSession();
        string streamed = await ApiModels.Concat(streaming.SendStreamingAsync("Describe a cat.", null, ApiModels.Seeded(3, 24), Ct));
        GenerationResult result = await whole.SendAsync("Describe a cat.", null, ApiModels.Seeded(3, 24), Ct);

        Assert.Equal(result.Text, streamed);
        Assert.NotEmpty(result.Text);
        GenerationResult usage = Assert.IsType<GenerationResult>(streaming.LastResult);
        Assert.Equal(result.TokenIds, usage.TokenIds);
        Assert.Equal(24, usage.CompletionTokens);
        Assert.Equal(result.PromptTokens, usage.PromptTokens);
        Assert.Equal(StopReason.MaxTokens, usage.StopReason);
        Assert.True(usage.PrefillTime > TimeSpan.Zero && usage.DecodeTime > TimeSpan.Zero);
        Assert.True(usage.PromptTokensPerSecond > 0 && usage.GeneratedTokensPerSecond > 0);
        Assert.Equal([ChatTurnRole.User, ChatTurnRole.Assistant], streaming.History.Select(t => t.Role));
        Assert.Equal(streamed, streaming.History[1].Text);
    }

    [Fact]
    public async Task SeedReproducesSampling()
    {
        using Qwen3VLChatSession a = ApiModels.Tiny.CreateSession(), b = ApiModels.Tiny.CreateSession(), c = ApiModels.Tiny.CreateSession();
        string first = (await a.SendAsync("Hello", null, ApiModels.Seeded(42, 16), Ct)).Text;
        string again = (await b.SendAsync("Hello", null, ApiModels.Seeded(42, 16), Ct)).Text;
        string other = (await c.SendAsync("Hello", null, ApiModels.Seeded(43, 16), Ct)).Text;
        Assert.Equal(first, again);
        Assert.NotEqual(first, other);
    }

    [Fact]
    public async Task CancellationStopsTheAnswerAndKeepsTheSessionUsable()
    {
        using Qwen3VLChatSession session = ApiModels.Tiny.CreateSession();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var pieces = new List<string>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (string piece in session.SendStreamingAsync("Count to a thousand.", null, ApiModels.Seeded(1, 500), cts.Token))
            {
                pieces.Add(piece);
                cts.Cancel();
            }
        });
        Assert.InRange(pieces.Count, 1, 100);
        Assert.Equal(string.Concat(pieces), session.History[^1].Text); // the partial answer stands

        // Leaving an enumeration early stops generation too, and frees the session.
        await foreach (string _ in session.SendStreamingAsync("Again.", null, ApiModels.Seeded(1, 500), Ct)) break;
        GenerationResult next = await session.SendAsync("And now?", null, ApiModels.Greedy(4), Ct);
        Assert.Equal(4, next.CompletionTokens);
    }

    [Fact]
    public async Task CancelledBeforeStartThrows()
    {
        using Qwen3VLChatSession session = ApiModels.Tiny.CreateSession();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => session.SendAsync("Hi", null, ApiModels.Greedy(4), new CancellationToken(true)));
        Assert.Equal(4, (await session.SendAsync("Hi", null, ApiModels.Greedy(4), Ct)).CompletionTokens);
    }

    [Fact]
    public async Task LaterTurnsReuseTheCacheAndMatchAFreshSession()
    {
        var options = ApiModels.Greedy(6);
        using var image = File.OpenRead(ApiModels.ImagePath());
        ChatImage picture = ChatImage.FromStream(image);
        using Qwen3VLChatSession session = ApiModels.Tiny.CreateSession(new ChatSessionOptions { SystemPrompt = "Be brief." });
        GenerationResult first = await session.SendAsync("What is this?", [picture], options, Ct);
        GenerationResult second = await session.SendAsync("And the colours?", null, options, Ct);
        Assert.Equal(0, first.CachedPromptTokens);
        Assert.True(second.CachedPromptTokens > first.PromptTokens - 2, $"cached {second.CachedPromptTokens} of the first prompt's {first.PromptTokens}");
        Assert.True(second.PromptTokens > first.PromptTokens + first.CompletionTokens);

        using Qwen3VLChatSession fresh = ApiModels.Tiny.CreateSession(new ChatSessionOptions { SystemPrompt = "Be brief." });
        fresh.AddUserMessage("What is this?", [picture]);
        fresh.AddAssistantMessage(first.Text);
        fresh.AddUserMessage("And the colours?");
        Assert.Equal(second.PromptTokens, fresh.CountPromptTokens());
        GenerationResult replay = await fresh.GenerateAsync(options, Ct);
        Assert.Equal(second.TokenIds, replay.TokenIds);

        // A different image at the same place must not reuse the first image's cache rows.
        session.Reset();
        Assert.Equal(0, session.CachedTokens);
        GenerationResult swapped = await session.SendAsync("What is this?", [ChatImage.FromFile(ApiModels.ImagePath("rgb_97x131.png"))], options, Ct);
        Assert.Equal(0, swapped.CachedPromptTokens);
    }

    [Fact]
    public async Task ImagesFromFileBytesAndStreamAreTheSameAndCountAsTokens()
    {
        string path = ApiModels.ImagePath();
        ChatImage fromFile = ChatImage.FromFile(path), fromBytes = ChatImage.FromBytes(File.ReadAllBytes(path));
        using FileStream stream = File.OpenRead(path);
        ChatImage fromStream = ChatImage.FromStream(stream);
        var results = new List<GenerationResult>();
        foreach (ChatImage image in new[] { fromFile, fromBytes, fromStream })
        {
            using Qwen3VLChatSession s = ApiModels.Tiny.CreateSession();
            results.Add(await s.SendAsync("Describe.", [image], ApiModels.Greedy(5), Ct));
        }
        Assert.All(results, r => Assert.Equal(results[0].TokenIds, r.TokenIds));

        using Qwen3VLChatSession textOnly = ApiModels.Tiny.CreateSession(), two = ApiModels.Tiny.CreateSession();
        textOnly.AddUserMessage("Describe.");
        two.AddUserMessage("Describe.", [fromFile, ChatImage.FromFile(ApiModels.ImagePath("rgb_50x37.png"))]);
        int imageTokens = ApiModels.Tiny.ImageProcessor.GetTokenCount(200, 300);
        Assert.Equal(textOnly.CountPromptTokens() + imageTokens + 2, results[0].PromptTokens);
        Assert.Equal(results[0].PromptTokens + ApiModels.Tiny.ImageProcessor.GetTokenCount(37, 50) + 2, two.CountPromptTokens());
    }

    [Fact]
    public async Task ParallelSessionsOnOneModelMatchSequentialOnes()
    {
        ChatImage image = ChatImage.FromFile(ApiModels.ImagePath());
        (string Text, ChatImage[] Images)[] prompts = [("First question", []), ("Second, with a picture", [image]), ("Third", []), ("Fourth, picture too", [image])];

        async Task<IReadOnlyList<int>> Ask((string Text, ChatImage[] Images) p)
        {
            using Qwen3VLChatSession s = ApiModels.Tiny.CreateSession();
            return (await s.SendAsync(p.Text, p.Images, ApiModels.Seeded(9, 12), Ct)).TokenIds;
        }

        var sequential = new List<IReadOnlyList<int>>();
        foreach (var p in prompts) sequential.Add(await Ask(p));
        IReadOnlyList<int>[] parallel = await Task.WhenAll(prompts.Select(p => Task.Run(() => Ask(p), Ct)));
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(sequential[i], parallel[i]);
    }

    [Fact]
    public async Task ASessionServesOneCallAtATime()
    {
        using Qwen3VLChatSession session = ApiModels.Tiny.CreateSession();
        await using IAsyncEnumerator<string> running = session.SendStreamingAsync("Talk.", null, ApiModels.Seeded(2, 200), Ct).GetAsyncEnumerator(Ct);
        Assert.True(await running.MoveNextAsync());
        await Assert.ThrowsAsync<InvalidOperationException>(() => session.SendAsync("Interrupt", null, ApiModels.Greedy(2), Ct));
        Assert.Throws<InvalidOperationException>(session.Reset);
    }

    [Fact]
    public async Task StopSequencesCutTheAnswer()
    {
        using Qwen3VLChatSession free = ApiModels.Tiny.CreateSession(), stopped = ApiModels.Tiny.CreateSession();
        string text = (await free.SendAsync("Say something.", null, ApiModels.Seeded(5, 40), Ct)).Text;
        Assert.True(text.Length > 8, text);
        string stop = text.Substring(text.Length / 2, 3);
        string expected = text[..text.IndexOf(stop, StringComparison.Ordinal)];

        var options = ApiModels.Seeded(5, 40) with { StopSequences = [stop, "\u0001never"] };
        string streamed = await ApiModels.Concat(stopped.SendStreamingAsync("Say something.", null, options, Ct));
        Assert.Equal(expected, streamed);
        Assert.Equal(expected, stopped.LastResult!.Text);
        Assert.Equal(StopReason.StopSequence, stopped.LastResult.StopReason);
    }

    [Fact]
    public async Task PromptTooLongIsALimitErrorAndTheMessageIsWithdrawn()
    {
        using Qwen3VLChatSession session = ApiModels.Tiny.CreateSession(new ChatSessionOptions { ContextLength = 32 });
        var e = await Assert.ThrowsAsync<Qwen3VLLimitExceededException>(() =>
            session.SendAsync("A long question " + string.Concat(Enumerable.Repeat("word ", 100)), null, ApiModels.Greedy(2), Ct));
        Assert.Contains("32", e.Message);
        Assert.Empty(session.History);
        Assert.Throws<InvalidOperationException>(() => session.CountPromptTokens());
    }

    [Fact]
    public async Task DefaultSamplingComesFromGenerationConfig()
    {
        SamplingOptions d = ApiModels.Tiny.DefaultSampling;
        Assert.Equal(0.7f, d.Temperature);
        Assert.Equal(20, d.TopK);
        Assert.Equal(0.8f, d.TopP);
        using Qwen3VLChatSession session = ApiModels.Tiny.CreateSession();
        GenerationResult r = await session.SendAsync("Hi", null, new GenerationOptions { MaxNewTokens = 3 }, Ct);
        Assert.InRange(r.CompletionTokens, 1, 3);
    }
}
