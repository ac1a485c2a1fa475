using System.Text;
using System.Text.Json;
using Qwen3VL.Native;
using static Qwen3VL.Server.Tests.ServerHarness;

namespace Qwen3VL.Server.Tests;

/// <summary><see cref="ChatRequest"/> parsing, without a server.</summary>
public sealed class ChatRequestTests
{
    private static ChatRequest Parse(object body) =>
        ChatRequest.Parse(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(body)), new ServerOptions { ModelPath = ModelDir }, SamplingOptions.Greedy, 1024);

    [Fact]
    public void UserContentPartsKeepTheirOrder()
    {
        ChatRequest request = Parse(new
        {
            messages = new object[]
            {
                new
                {
                    role = "user",
                    content = new object[]
                    {
                        new { type = "text", text = "Compare " },
                        new { type = "image_url", image_url = new { url = DataUri("rgb_97x131.png") } },
                        new { type = "text", text = " with " },
                        new { type = "image_url", image_url = new { url = DataUri("rgb_50x37.png") } },
                        new { type = "text", text = " please." },
                    },
                },
            },
        });

        ChatTurn turn = Assert.Single(request.Turns);
        Assert.Equal([ChatTurnPartKind.Text, ChatTurnPartKind.Image, ChatTurnPartKind.Text, ChatTurnPartKind.Image, ChatTurnPartKind.Text],
            turn.Parts.Select(p => p.Kind));
        Assert.Equal(["Compare ", null, " with ", null, " please."], turn.Parts.Select(p => p.Text));
        Assert.Equal([(97, 131), (50, 37)], turn.Images.Select(i => (i.Width, i.Height)));
        Assert.Equal(2, request.ImageCount);
    }

    [Fact]
    public void StringContentIsOneTextPart()
    {
        ChatRequest request = Parse(new { messages = new object[] { new { role = "user", content = "Hello" } } });
        ChatTurnPart part = Assert.Single(Assert.Single(request.Turns).Parts);
        Assert.Equal("Hello", part.Text);
    }
}
