namespace Qwen3VL.Native.Processing.Images;

/// <summary>
/// The Qwen3-VL image processor: smart_resize, antialiased bicubic resize, rescale + normalise,
/// repeat to the temporal patch size, and patchify into <see cref="ProcessedImage.PixelValues"/>.
/// </summary>
/// <remarks>
/// Matches transformers 5 <c>Qwen2VLImageProcessor._preprocess</c> (models/qwen2_vl/image_processing_qwen2_vl.py,
/// TorchvisionBackend, the default ("fast") backend that AutoProcessor loads for Qwen3-VL): resize via
/// <see cref="AntialiasedBicubicResampler"/>, then <c>TorchvisionBackend._rescale_and_normalize</c> with the fused
/// mean/std (<c>_fuse_mean_std_and_rescale_factor</c>: float32 <c>(x - mean/rescale) / (std/rescale)</c>), then
/// <c>view(B, T/tp, tp, C, H/(m*p), m, p, W/(m*p), m, p).permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)</c>.
/// Instances are immutable and thread-safe.
/// </remarks>
public sealed class ImageProcessor
{
    private readonly float[][] _lut;

    /// <summary>Creates a processor with <paramref name="config"/> (Qwen3-VL defaults when null).</summary>
    /// <exception cref="ArgumentException">The config is invalid.</exception>
    public ImageProcessor(ImageProcessorConfig? config = null)
    {
        Config = config ?? new ImageProcessorConfig();
        Config.Validate();
        _lut = BuildLookup(Config);
    }

    /// <summary>The settings in use.</summary>
    public ImageProcessorConfig Config { get; }

    /// <summary>Creates a processor from a checkpoint directory's image-processor config.</summary>
    /// <exception cref="InvalidDataException">The config file is malformed.</exception>
    public static ImageProcessor FromCheckpointDirectory(string directory) =>
        new(ImageProcessorConfig.FromCheckpointDirectory(directory));

    /// <summary>The (height, width) an image of the given size is resized to, honouring optional pixel-budget overrides.</summary>
    public (int Height, int Width) GetResizedSize(int height, int width, long? minPixels = null, long? maxPixels = null) =>
        ImageSizing.SmartResize(height, width, Config.Factor, minPixels ?? Config.MinPixels, maxPixels ?? Config.MaxPixels);

    /// <summary>Number of image tokens an image of the given size produces.</summary>
    public int GetTokenCount(int height, int width, long? minPixels = null, long? maxPixels = null)
    {
        (int h, int w) = Config.DoResize ? GetResizedSize(height, width, minPixels, maxPixels) : (height, width);
        return (h / Config.PatchSize) * (w / Config.PatchSize) / (Config.MergeSize * Config.MergeSize);
    }

    /// <summary>Decodes <paramref name="path"/> with <see cref="ImageDecoder"/> and processes it.</summary>
    public ProcessedImage Process(string path, long? minPixels = null, long? maxPixels = null, ImageDecoderOptions? decoderOptions = null) =>
        Process(ImageDecoder.Decode(path, decoderOptions), minPixels, maxPixels);

    /// <summary>
    /// Processes one RGB image. <paramref name="minPixels"/> / <paramref name="maxPixels"/> override the config's
    /// pixel budget (token budget) for this call.
    /// </summary>
    /// <exception cref="Qwen3VLInputException">The aspect ratio exceeds 200, the pixel budget is not positive, the resized
    /// image would exceed <see cref="MaxResizedPixels"/>, or with resizing disabled the size is not a multiple of patch * merge.</exception>
    public ProcessedImage Process(RgbImage image, long? minPixels = null, long? maxPixels = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        ImageProcessorConfig c = Config;
        int h = image.Height, w = image.Width;
        byte[] pixels = image.Pixels;
        if (c.DoResize)
        {
            (int rh, int rw) = CheckedResizedSize(h, w, minPixels, maxPixels);
            if (rh != h || rw != w)
            {
                pixels = AntialiasedBicubicResampler.Resize(pixels, w, h, 3, rw, rh);
                h = rh;
                w = rw;
            }
        }
        else if (h % c.Factor != 0 || w % c.Factor != 0)
        {
            throw new Qwen3VLInputException($"With do_resize = false the image size ({h}x{w}) must be a multiple of {c.Factor}.", "image");
        }

        return Patchify(pixels, h, w);
    }

    /// <summary>
    /// Largest image, in pixels, that <see cref="Process(RgbImage, long?, long?)"/> resizes to (the decoder's default pixel cap: 201 MB of RGB).
    /// A pixel budget (min_pixels) that asks for more is refused before any memory is taken.
    /// </summary>
    public const long MaxResizedPixels = ImageDecoderOptions.DefaultMaxPixels;

    // SmartResize's refusals (aspect ratio, a non-positive budget) and a target above MaxResizedPixels as the caller's error.
    private (int Height, int Width) CheckedResizedSize(int h, int w, long? minPixels, long? maxPixels)
    {
        (int rh, int rw) size;
        try
        {
            size = GetResizedSize(h, w, minPixels, maxPixels);
        }
        catch (ArgumentException e)
        {
            throw new Qwen3VLInputException($"The image ({w}x{h}) cannot be processed: {e.Message}", "image", e);
        }
        long area = (long)size.rh * size.rw;
        if (area > MaxResizedPixels)
        {
            throw new Qwen3VLInputException($"The pixel budget resizes the image ({w}x{h}) to {size.rw}x{size.rh} = {area} pixels, above the " +
                $"cap of {MaxResizedPixels}; lower min_pixels (now {minPixels ?? Config.MinPixels}).", "min_pixels");
        }
        return size;
    }

    private ProcessedImage Patchify(byte[] rgb, int height, int width)
    {
        ImageProcessorConfig c = Config;
        int p = c.PatchSize, m = c.MergeSize, tp = c.TemporalPatchSize;
        int gridH = height / p, gridW = width / p;
        int planeSize = p * p;            // one (channel, t) plane of a patch
        int channelStride = tp * planeSize;
        int patchDim = 3 * channelStride;
        int blocksW = gridW / m;
        var output = GC.AllocateUninitializedArray<float>(checked(gridH * gridW * patchDim));
        float[] lr = _lut[0], lg = _lut[1], lb = _lut[2];

        // One patch row (gh) at a time: every output row of it depends only on image rows gh*p .. gh*p+p-1.
        void PatchRow(int gh)
        {
            int bh = gh / m, mh = gh % m;
            Span<float> outSpan = output;
            for (int gw = 0; gw < gridW; gw++)
            {
                int bw = gw / m, mw = gw % m;
                int patchIndex = (((bh * blocksW) + bw) * m + mh) * m + mw;
                int basePatch = patchIndex * patchDim;
                for (int py = 0; py < p; py++)
                {
                    int src = (((gh * p) + py) * width + (gw * p)) * 3;
                    int dst = basePatch + (py * p);
                    Span<float> r0 = outSpan.Slice(dst, p);
                    Span<float> g0 = outSpan.Slice(dst + channelStride, p);
                    Span<float> b0 = outSpan.Slice(dst + (2 * channelStride), p);
                    for (int px = 0; px < p; px++, src += 3)
                    {
                        r0[px] = lr[rgb[src]];
                        g0[px] = lg[rgb[src + 1]];
                        b0[px] = lb[rgb[src + 2]];
                    }

                    // Repeat the frame to the temporal patch size (the last frame is repeated, as upstream).
                    for (int t = 1; t < tp; t++)
                    {
                        r0.CopyTo(outSpan.Slice(dst + (t * planeSize), p));
                        g0.CopyTo(outSpan.Slice(dst + channelStride + (t * planeSize), p));
                        b0.CopyTo(outSpan.Slice(dst + (2 * channelStride) + (t * planeSize), p));
                    }
                }
            }
        }

        if ((long)gridH * gridW * patchDim < 1 << 18 || Environment.ProcessorCount == 1)
        {
            for (int gh = 0; gh < gridH; gh++)
            {
                PatchRow(gh);
            }
        }
        else
        {
            Parallel.For(0, gridH, PatchRow);
        }

        return new ProcessedImage(output, 1, gridH, gridW, patchDim, m, height, width);
    }

    // Value of each uint8 level per channel, computed as torch does in float32.
    private static float[][] BuildLookup(ImageProcessorConfig c)
    {
        var lut = new float[3][];
        for (int ch = 0; ch < 3; ch++)
        {
            lut[ch] = new float[256];
            float mean = (float)c.ImageMean[ch], std = (float)c.ImageStd[ch];
            if (c.DoRescale && c.DoNormalize)
            {
                // _fuse_mean_std_and_rescale_factor: tensor(mean, float32) * (1.0 / rescale_factor).
                float inv = (float)(1.0 / c.RescaleFactor);
                mean *= inv;
                std *= inv;
            }

            for (int v = 0; v < 256; v++)
            {
                float x = v;
                if (c.DoNormalize)
                {
                    x = (x - mean) / std;
                }
                else if (c.DoRescale)
                {
                    x *= (float)c.RescaleFactor;
                }

                lut[ch][v] = x;
            }
        }

        return lut;
    }
}
