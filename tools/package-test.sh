#!/usr/bin/env bash
# Proves the NuGet package the way a user adopts it: tools/pack.sh builds it into a local feed folder; a throwaway
# console app in a temp folder does `dotnet add package Qwen3VL.Native --source <feed>` (nuget.config: the local feed
# plus nuget.org for SkiaSharp & co.), loads the repository's tiny checkpoint and generates a few tokens on CPU with an
# image; then the same app is published with NativeAOT (-r linux-x64) and the native binary runs too.
# The package gets a unique pre-release version so the global NuGet cache never serves a stale build; that cache
# entry is removed at the end. Usage: tools/package-test.sh  (QWEN3VL_PACK_CPU_ONLY=1 without nvcc)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/qwen3vl-package-test.XXXXXX")
version="$(sed -nE 's:.*<Version>([^<]+)</Version>.*:\1:p' Directory.Build.props | head -n 1)-local.$(date +%s)"
cache=$(dotnet nuget locals global-packages -l | sed -E 's/^global-packages: //')
cleanup() { rm -rf "$work" "${cache%/}/qwen3vl.native/$version"; }
trap cleanup EXIT

feed="$work/feed"
QWEN3VL_PACKAGE_VERSION="$version" bash tools/pack.sh "$feed"
packed=$(date +%s)

app="$work/app"
mkdir -p "$app"
cd "$app"
dotnet new console --framework net10.0 --name PackageConsumer --output . >/dev/null
cat > nuget.config <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$feed" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
</configuration>
XML
dotnet add package Qwen3VL.Native --version "$version" --source "$feed" >/dev/null
cat > Program.cs <<'CS'
using Qwen3VL.Native;

// A user's first program: load a checkpoint, ask about an image, print the answer and its usage.
if (args.Length != 2)
{
    Console.Error.WriteLine("usage: PackageConsumer MODEL_DIR IMAGE");
    return 2;
}
try
{
    using Qwen3VLModel model = Qwen3VLModel.Load(args[0], new Qwen3VLModelOptions { Device = "cpu", ContextLength = 512 });
    using Qwen3VLChatSession session = model.CreateSession();
    var options = new GenerationOptions { MaxNewTokens = 6, Sampling = SamplingOptions.Greedy };
    var pieces = new List<string>();
    await foreach (string piece in session.SendStreamingAsync("What is in this picture?", [ChatImage.FromFile(args[1])], options))
    {
        pieces.Add(piece);
    }
    GenerationResult result = session.LastResult ?? throw new InvalidOperationException("no result");
    Console.WriteLine($"native library: {NativeInfo.Query().LibraryPath}");
    Console.WriteLine($"device: {model.DeviceName}");
    Console.WriteLine($"tokens: [{string.Join(", ", result.TokenIds)}]");
    Console.WriteLine($"text: {System.Text.Json.JsonSerializer.Serialize(string.Concat(pieces), PackageConsumerJson.Default.String)}");
    Console.WriteLine($"usage: prompt {result.PromptTokens}, completion {result.CompletionTokens}");
    return result.CompletionTokens > 0 && result.PromptTokens > 0 ? 0 : 1;
}
catch (Exception e)
{
    Console.Error.WriteLine("package consumer failed: " + e);
    return 1;
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class PackageConsumerJson : System.Text.Json.Serialization.JsonSerializerContext;
CS
model="$repo/tests/fixtures/tiny-tied/model"
image="$repo/tests/fixtures/tiny-tied/images/rgb_97x131.png"

echo "=== package test: dotnet run (JIT) with Qwen3VL.Native $version"
dotnet run -c Release -- "$model" "$image" | tee "$work/jit.txt"
grep -q "runtimes/linux-x64/native/\|/libqwen3vl" "$work/jit.txt"
jitted=$(date +%s)

echo "=== package test: NativeAOT publish (linux-x64) and run"
dotnet publish -c Release -r linux-x64 -p:PublishAot=true -o "$work/aot" -nologo -v quiet
ls "$work/aot"
"$work/aot/PackageConsumer" "$model" "$image" | tee "$work/aot.txt"
# The two runs must agree (greedy decoding on the same checkpoint).
diff <(grep '^tokens:' "$work/jit.txt") <(grep '^tokens:' "$work/aot.txt")
end=$(date +%s)
echo "package test: passed (pack $((packed - start)) s, JIT app $((jitted - packed)) s, NativeAOT publish + run $((end - jitted)) s, total $((end - start)) s)"
