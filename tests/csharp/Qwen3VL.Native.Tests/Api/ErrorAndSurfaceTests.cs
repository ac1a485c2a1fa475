using System.Reflection;
using System.Runtime.InteropServices;
using Qwen3VL.Native.Processing.Images;

namespace Qwen3VL.Native.Tests.Api;

/// <summary>Loading errors name what is missing; progress is reported; the public surface hides native handles.</summary>
public sealed class ErrorAndSurfaceTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("qwen3vl-api-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    [Fact]
    public void MissingFolder()
    {
        var e = Assert.Throws<DirectoryNotFoundException>(() => Qwen3VLModel.Load(Path.Combine(_temp, "nowhere")));
        Assert.Contains("nowhere", e.Message);
    }

    [Fact]
    public void FolderWithoutConfig()
    {
        var e = Assert.Throws<FileNotFoundException>(() => Qwen3VLModel.Load(_temp));
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void FolderWithoutTokenizer()
    {
        File.Copy(Path.Combine(ApiModels.TinyDirectory, "config.json"), Path.Combine(_temp, "config.json"));
        var e = Assert.Throws<FileNotFoundException>(() => Qwen3VLModel.Load(_temp));
        Assert.Contains("tokenizer.json", e.Message);
    }

    [Fact]
    public void FolderWithoutWeights()
    {
        File.Copy(Path.Combine(ApiModels.TinyDirectory, "config.json"), Path.Combine(_temp, "config.json"));
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"), "{}");
        var e = Assert.Throws<FileNotFoundException>(() => Qwen3VLModel.Load(_temp));
        Assert.Contains("no weights", e.Message);
        Assert.Contains("model.safetensors", e.Message);

        File.WriteAllText(Path.Combine(_temp, "model.safetensors.index.json"), """{"weight_map": {"a": "model-00001-of-00002.safetensors"}}""");
        e = Assert.Throws<FileNotFoundException>(() => Qwen3VLModel.Load(_temp));
        Assert.Contains("model-00001-of-00002.safetensors", e.Message);
    }

    [Fact]
    public void BadOptions()
    {
        Assert.Throws<ArgumentException>(() => Qwen3VLModel.Load(ApiModels.TinyDirectory, new Qwen3VLModelOptions { Device = "tpu" }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Qwen3VLModel.Load(ApiModels.TinyDirectory, new Qwen3VLModelOptions { ContextLength = 0 }));
    }

    [Fact]
    public void CorruptImage()
    {
        Assert.Throws<ImageFormatException>(() => ChatImage.FromBytes(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 1, 2, 3 }));
        string path = Path.Combine(_temp, "broken.jpg");
        File.WriteAllBytes(path, [0xFF, 0xD8, 0xFF, 0x00, 0x01]);
        var e = Assert.Throws<ImageFormatException>(() => ChatImage.FromFile(path));
        Assert.Contains("broken.jpg", e.Message);
        Assert.Throws<FileNotFoundException>(() => ChatImage.FromFile(Path.Combine(_temp, "absent.png")));
    }

    [Fact]
    public async Task LoadAsyncReportsProgressAndHonoursOptions()
    {
        var reports = new List<LoadProgress>();
        var progress = new SynchronousProgress(reports.Add);
        using Qwen3VLModel model = await Qwen3VLModel.LoadAsync(ApiModels.TinyDirectory,
            new Qwen3VLModelOptions { Device = "auto", ContextLength = 100, Threads = 1, MaxPixels = 64 * 64 }, progress, TestContext.Current.CancellationToken);
        Assert.True(reports.Count > 10);
        Assert.Equal(1.0, reports[^1].Fraction);
        Assert.Equal(reports[^1].TensorCount, reports[^1].TensorsLoaded);
        for (int i = 1; i < reports.Count; i++) Assert.True(reports[i].BytesLoaded >= reports[i - 1].BytesLoaded);
        Assert.Equal(100, model.ContextLength);
        Assert.StartsWith("cpu", model.DeviceName); // no CUDA device here: auto falls back to the CPU
        Assert.True(model.ImageProcessor.GetTokenCount(1000, 1000) <= 4);
        Assert.True(model.ChatTemplate.IsKnownQwen3VLInstruct);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            Qwen3VLModel.LoadAsync(ApiModels.TinyDirectory, null, null, new CancellationToken(true)));
    }

    [Fact]
    public void NoPublicMemberExposesNativeHandles()
    {
        static bool Native(Type t) =>
            typeof(SafeHandle).IsAssignableFrom(t) || t == typeof(IntPtr) || t == typeof(UIntPtr) || t.IsPointer || t.IsFunctionPointer ||
            (t.HasElementType && Native(t.GetElementType()!)) || (t.IsGenericType && t.GetGenericArguments().Any(Native));

        var offenders = new List<string>();
        foreach (Type type in typeof(Qwen3VLModel).Assembly.GetExportedTypes())
        {
            if (typeof(SafeHandle).IsAssignableFrom(type)) offenders.Add(type.FullName!);
            const BindingFlags visible = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
            foreach (MemberInfo m in type.GetMembers(visible))
            {
                IEnumerable<Type> types = m switch
                {
                    MethodBase method => method.GetParameters().Select(p => p.ParameterType)
                        .Concat(method is MethodInfo mi ? [mi.ReturnType] : []),
                    PropertyInfo p => [p.PropertyType],
                    FieldInfo f => [f.FieldType],
                    EventInfo e => [e.EventHandlerType!],
                    _ => [],
                };
                if (types.Any(Native)) offenders.Add($"{type.FullName}.{m.Name}");
            }
        }
        Assert.Empty(offenders);
    }

    /// <summary>IProgress that reports on the loading thread (Progress&lt;T&gt; would post later).</summary>
    private sealed class SynchronousProgress(Action<LoadProgress> report) : IProgress<LoadProgress>
    {
        public void Report(LoadProgress value) => report(value);
    }
}
