// Resampling matched to the oracle: transformers 5 Qwen2VLImageProcessor (TorchvisionBackend) on CPU.
//
//  * transformers/image_processing_backends.py  TorchvisionBackend.process_image: PIL image -> convert_to_rgb ->
//    tvF.pil_to_tensor (uint8 CHW); TorchvisionBackend.resize -> tvF.resize(image, (h, w),
//    interpolation=BICUBIC (PILImageResampling.BICUBIC = 3), antialias=True).
//  * torchvision/transforms/v2/functional/_geometry.py  resize_image: size unchanged -> returned as is;
//    on CPU _do_native_uint8_resize_on_cpu(BICUBIC) is True, so the uint8 tensor goes to
//    torch.nn.functional.interpolate(mode="bicubic", align_corners=False, antialias=True) without a float cast
//    (the clamp/round/cast branch is only for GPU/non-native paths).
//  * pytorch aten/src/ATen/native/cpu/UpSampleKernel.cpp  _upsample_bicubic2d_aa -> uint8 separable path
//    (upsample_avx_bilinear_bicubic_uint8 in cpu/UpSampleKernelAVXAntialias.h with AVX2, else
//    separable_upsample_generic_Nd_kernel_impl; both use the same int16 weights and rounding):
//      - HelperInterpCubic::aa_filter<double, true>: Keys cubic a = -0.5 (cubic_convolution1/2 of UpSample.h),
//        also when upscaling (antialias=True always uses a = -0.5; -0.75 is only the antialias=False kernel);
//      - HelperInterpBase::_compute_indices_min_size_weights_aa: scale = in/out (area_pixel_compute_scale,
//        align_corners=False, no scale factor), support = 2 * max(scale, 1), center = scale * (i + 0.5),
//        xmin = max(int64(center - support + 0.5), 0), xsize = min(int64(center + support + 0.5), in) - xmin
//        clamped to [0, ceil(support) * 2 + 1], w_j = filter((j + xmin - center + 0.5) * invscale),
//        normalised by their sum;
//      - HelperInterpBase::_compute_index_ranges_int16_weights: one precision p per axis: p counts up from 0
//        while (int)(0.5 + wt_max * 2^(p+1)) < 2^15, at most 22; weights * 2^p rounded half away from zero
//        to int16;
//      - basic_loop_aa_horizontal/vertical<uint8_t> (and the AVX equivalents): acc = 2^(p-1) + sum(px * w),
//        out = clamp(acc >> p, 0, 255);
//      - separable_upsample_generic_Nd_kernel_impl: horizontal (width) pass first into a uint8 buffer, then the
//        vertical pass; a pass whose size is unchanged is skipped.

namespace Qwen3VL.Native.Processing.Images;

/// <summary>
/// Antialiased bicubic resize of 8-bit interleaved images, bit-compatible in design with PyTorch's CPU
/// <c>interpolate(uint8, mode="bicubic", antialias=True, align_corners=False)</c> (which torchvision's
/// <c>resize</c> uses for uint8 tensors and which transformers' fast image processors call).
/// </summary>
public static class AntialiasedBicubicResampler
{
    /// <summary>Per-axis resampling taps in PyTorch's int16 fixed-point form.</summary>
    public sealed class AxisWeights
    {
        internal AxisWeights(int[] start, int[] count, short[] weights, int taps, int precision)
        {
            Start = start;
            Count = count;
            Weights = weights;
            Taps = taps;
            Precision = precision;
        }

        /// <summary>First source index of each output index.</summary>
        public int[] Start { get; }

        /// <summary>Number of source samples of each output index.</summary>
        public int[] Count { get; }

        /// <summary>Weights, <see cref="Taps"/> per output index (unused tail entries are zero).</summary>
        public short[] Weights { get; }

        /// <summary>Row length of <see cref="Weights"/> (max taps per output index).</summary>
        public int Taps { get; }

        /// <summary>Fixed-point precision in bits shared by all weights of the axis.</summary>
        public int Precision { get; }
    }

    /// <summary>Keys cubic convolution kernel with a = -0.5, in PyTorch's evaluation order.</summary>
    internal static double Filter(double x)
    {
        const double a = -0.5;
        x = Math.Abs(x);
        if (x < 1.0)
        {
            return (((a + 2) * x) - (a + 3)) * x * x + 1;
        }

        if (x < 2.0)
        {
            return ((((a * x) - (5 * a)) * x) + (8 * a)) * x - (4 * a);
        }

        return 0.0;
    }

    /// <summary>Computes the int16 taps of one axis resized from <paramref name="inSize"/> to <paramref name="outSize"/>.</summary>
    public static AxisWeights ComputeWeights(int inSize, int outSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outSize);

        double scale = (double)inSize / outSize;
        double support = scale >= 1.0 ? 2.0 * scale : 2.0;
        int taps = ((int)Math.Ceiling(support) * 2) + 1;
        double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;

        var start = new int[outSize];
        var count = new int[outSize];
        var real = new double[outSize * taps];
        double wtMax = 0.0;
        for (int i = 0; i < outSize; i++)
        {
            double center = scale * (i + 0.5);
            long xmin = Math.Max((long)(center - support + 0.5), 0L);
            long xsize = Math.Min((long)(center + support + 0.5), inSize) - xmin;
            xsize = Math.Clamp(xsize, 0L, taps);

            Span<double> w = real.AsSpan(i * taps, taps);
            double total = 0.0;
            for (int j = 0; j < xsize; j++)
            {
                double v = Filter(((double)(j + xmin) - center + 0.5) * invscale);
                w[j] = v;
                total += v;
            }

            if (total != 0.0)
            {
                for (int j = 0; j < xsize; j++)
                {
                    w[j] /= total;
                    wtMax = Math.Max(wtMax, w[j]);
                }
            }

            start[i] = (int)xmin;
            count[i] = (int)xsize;
        }

        int precision;
        for (precision = 0; precision < 22; ++precision)
        {
            int next = (int)(0.5 + (wtMax * (1 << (precision + 1))));
            if (next >= (1 << 15))
            {
                break;
            }
        }

        var weights = new short[real.Length];
        double unit = 1 << precision;
        for (int k = 0; k < real.Length; k++)
        {
            double v = real[k] * unit;
            weights[k] = (short)(v < 0 ? (int)(-0.5 + v) : (int)(0.5 + v));
        }

        return new AxisWeights(start, count, weights, taps, precision);
    }

    /// <summary>
    /// Resizes an interleaved 8-bit image (<paramref name="channels"/> bytes per pixel, rows contiguous).
    /// Returns <paramref name="source"/> copied when the size is unchanged.
    /// </summary>
    /// <exception cref="ArgumentException">The buffer is smaller than the declared size.</exception>
    public static byte[] Resize(ReadOnlySpan<byte> source, int width, int height, int channels, int newWidth, int newHeight)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(channels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(newWidth);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(newHeight);
        if (source.Length < (long)width * height * channels)
        {
            throw new ArgumentException("Source buffer is smaller than width * height * channels.", nameof(source));
        }

        byte[] current = source[..(width * height * channels)].ToArray();
        if (newWidth != width)
        {
            current = ResizeHorizontal(current, width, height, channels, newWidth);
        }

        if (newHeight != height)
        {
            current = ResizeVertical(current, newWidth, height, channels, newHeight);
        }

        return current;
    }

    private static byte[] ResizeHorizontal(byte[] src, int width, int height, int channels, int newWidth)
    {
        AxisWeights ax = ComputeWeights(width, newWidth);
        var dst = new byte[(long)newWidth * height * channels];
        int half = 1 << (ax.Precision - 1);
        int shift = ax.Precision;
        int srcRow = width * channels;
        int dstRow = newWidth * channels;

        void Row(int y)
        {
            ReadOnlySpan<byte> s = src.AsSpan(y * srcRow, srcRow);
            Span<byte> d = dst.AsSpan(y * dstRow, dstRow);
            ReadOnlySpan<short> allW = ax.Weights;
            for (int ox = 0; ox < newWidth; ox++)
            {
                int xmin = ax.Start[ox];
                int n = ax.Count[ox];
                ReadOnlySpan<short> w = allW.Slice(ox * ax.Taps, n);
                if (channels == 3)
                {
                    int a0 = half, a1 = half, a2 = half;
                    int p = xmin * 3;
                    for (int k = 0; k < n; k++, p += 3)
                    {
                        int wk = w[k];
                        a0 += s[p] * wk;
                        a1 += s[p + 1] * wk;
                        a2 += s[p + 2] * wk;
                    }

                    int o = ox * 3;
                    d[o] = Clamp8(a0 >> shift);
                    d[o + 1] = Clamp8(a1 >> shift);
                    d[o + 2] = Clamp8(a2 >> shift);
                }
                else
                {
                    for (int c = 0; c < channels; c++)
                    {
                        int acc = half;
                        for (int k = 0; k < n; k++)
                        {
                            acc += s[((xmin + k) * channels) + c] * w[k];
                        }

                        d[(ox * channels) + c] = Clamp8(acc >> shift);
                    }
                }
            }
        }

        RunRows(height, (long)newWidth * channels * ax.Taps, Row);
        return dst;
    }

    private static byte[] ResizeVertical(byte[] src, int width, int height, int channels, int newHeight)
    {
        AxisWeights ax = ComputeWeights(height, newHeight);
        int row = width * channels;
        var dst = new byte[(long)row * newHeight];
        int half = 1 << (ax.Precision - 1);
        int shift = ax.Precision;

        void Row(int oy)
        {
            int ymin = ax.Start[oy];
            int n = ax.Count[oy];
            ReadOnlySpan<short> w = ax.Weights.AsSpan(oy * ax.Taps, n);
            Span<int> acc = row <= 16384 ? stackalloc int[row] : new int[row];
            acc.Fill(half);
            for (int k = 0; k < n; k++)
            {
                int wk = w[k];
                ReadOnlySpan<byte> s = src.AsSpan((ymin + k) * row, row);
                for (int x = 0; x < row; x++)
                {
                    acc[x] += s[x] * wk;
                }
            }

            Span<byte> d = dst.AsSpan(oy * row, row);
            for (int x = 0; x < row; x++)
            {
                d[x] = Clamp8(acc[x] >> shift);
            }
        }

        RunRows(newHeight, (long)row * ax.Taps, Row);
        return dst;
    }

    private static void RunRows(int rows, long workPerRow, Action<int> body)
    {
        if (rows * workPerRow < 1 << 16 || Environment.ProcessorCount == 1)
        {
            for (int y = 0; y < rows; y++)
            {
                body(y);
            }
        }
        else
        {
            Parallel.For(0, rows, body);
        }
    }

    private static byte Clamp8(int v) => (byte)(v < 0 ? 0 : v > 255 ? 255 : v);
}
