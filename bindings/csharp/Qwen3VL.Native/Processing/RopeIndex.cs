namespace Qwen3VL.Native.Processing;

/// <summary>An image's (or video's) patch grid: temporal patches, patch rows and patch columns (<c>grid_thw</c>).</summary>
/// <param name="T">Temporal patches (1 for an image).</param>
/// <param name="H">Patch rows.</param>
/// <param name="W">Patch columns.</param>
public readonly record struct GridThw(int T, int H, int W)
{
    /// <summary>Number of patches, t·h·w.</summary>
    public int Patches => checked(T * H * W);
}

/// <summary>The M-RoPE positions of a token sequence (three streams) and what decoding needs afterwards.</summary>
public sealed class RopePositions
{
    internal RopePositions(int[] positions, int length, int nextPosition)
    {
        Positions = positions;
        Length = length;
        NextPosition = nextPosition;
    }

    /// <summary>Stream-major positions <c>[3, Length]</c>: the t stream, then h, then w (the layout of the native ops).</summary>
    public int[] Positions { get; }

    /// <summary>Number of tokens.</summary>
    public int Length { get; }

    /// <summary>One past the largest position used (the position of the next text token).</summary>
    public int NextPosition { get; }

    /// <summary>
    /// <c>rope_delta</c> of transformers for a sequence that starts at cache row <paramref name="cacheOffset"/>: the
    /// position of cache row n while decoding is n + RopeDelta on all three streams.
    /// </summary>
    public int RopeDelta(int cacheOffset = 0) => NextPosition - (cacheOffset + Length);

    /// <summary>Position of token <paramref name="index"/> on stream <paramref name="stream"/> (0 t, 1 h, 2 w).</summary>
    public int this[int stream, int index] => Positions[stream * Length + index];
}

/// <summary>
/// Qwen3-VL's <c>get_rope_index</c>: 3-stream M-RoPE positions for a prompt with images (and videos). Text tokens use
/// t = h = w = running index; an image of merged grid (T, H/m, W/m) after text ending at s uses t = s + t_index,
/// h = s + row, w = s + col; text after it resumes at the previous maximum + 1. rope_delta = max + 1 − length.
/// </summary>
public static class RopeIndex
{
    /// <summary>Computes the positions of <paramref name="inputIds"/>.</summary>
    /// <param name="inputIds">The prompt, with each image's pad token repeated t·h·w/m² times.</param>
    /// <param name="imageGrids">Grids of the images, in prompt order.</param>
    /// <param name="videoGrids">Grids of the videos, in prompt order (each split into t frames of t = 1, as transformers does); null for none.</param>
    /// <param name="spatialMergeSize">The vision spatial merge size m.</param>
    /// <param name="imageTokenId"><c>&lt;|image_pad|&gt;</c> id.</param>
    /// <param name="videoTokenId"><c>&lt;|video_pad|&gt;</c> id.</param>
    /// <param name="visionStartTokenId"><c>&lt;|vision_start|&gt;</c> id.</param>
    /// <param name="startPosition">Position of the first token (0 for a fresh prompt; the previous <see cref="RopePositions.NextPosition"/> for a continuation).</param>
    /// <exception cref="ArgumentException">The pads do not match the grids.</exception>
    public static RopePositions Compute(
        ReadOnlySpan<int> inputIds,
        IReadOnlyList<GridThw> imageGrids,
        IReadOnlyList<GridThw>? videoGrids,
        int spatialMergeSize,
        int imageTokenId,
        int videoTokenId,
        int visionStartTokenId,
        int startPosition = 0)
    {
        ArgumentNullException.ThrowIfNull(imageGrids);
        ArgumentOutOfRangeException.ThrowIfLessThan(spatialMergeSize, 1);
        int n = inputIds.Length;
        var videos = new List<GridThw>();
        if (videoGrids is not null)
        {
            foreach (GridThw g in videoGrids)
            {
                for (int f = 0; f < g.T; f++) videos.Add(g with { T = 1 });
            }
        }

        // Count images and videos as transformers does: vision_start followed by the pad token.
        int imageCount = 0, videoCount = 0;
        for (int i = 0; i + 1 < n; i++)
        {
            if (inputIds[i] != visionStartTokenId) continue;
            if (inputIds[i + 1] == imageTokenId) imageCount++;
            else if (inputIds[i + 1] == videoTokenId) videoCount++;
        }
        if (imageCount != imageGrids.Count)
        {
            throw new ArgumentException($"The prompt holds {imageCount} image(s) but {imageGrids.Count} image grid(s) were given.", nameof(imageGrids));
        }
        if (videoCount != videos.Count)
        {
            throw new ArgumentException($"The prompt holds {videoCount} video frame group(s) but the video grids give {videos.Count}.", nameof(videoGrids));
        }

        var positions = new int[3 * n];
        int st = 0;
        int next = startPosition; // max + 1 of everything placed so far
        int imageIndex = 0, videoIndex = 0;
        for (int k = 0; k < imageCount + videoCount; k++)
        {
            int edImage = imageIndex < imageCount ? IndexOf(inputIds, imageTokenId, st) : -1;
            int edVideo = videoIndex < videos.Count ? IndexOf(inputIds, videoTokenId, st) : -1;
            if (edImage < 0) edImage = n + 1;
            if (edVideo < 0) edVideo = n + 1;
            GridThw grid;
            int ed, pad;
            if (edImage < edVideo)
            {
                grid = imageGrids[imageIndex++];
                ed = edImage;
                pad = imageTokenId;
            }
            else
            {
                grid = videos[videoIndex++];
                ed = edVideo;
                pad = videoTokenId;
            }
            if (ed > n) throw new ArgumentException("A vision placeholder has no pad tokens.", nameof(inputIds));
            if (grid.T <= 0 || grid.H <= 0 || grid.W <= 0 || grid.H % spatialMergeSize != 0 || grid.W % spatialMergeSize != 0)
            {
                throw new ArgumentException($"Invalid grid {grid} for merge size {spatialMergeSize}.", nameof(imageGrids));
            }
            int gt = grid.T, gh = grid.H / spatialMergeSize, gw = grid.W / spatialMergeSize;
            int count = checked(gt * gh * gw);
            if (ed + count > n)
            {
                throw new ArgumentException($"The prompt has fewer pad tokens than grid {grid} needs ({count}).", nameof(inputIds));
            }
            for (int i = ed; i < ed + count; i++)
            {
                if (inputIds[i] != pad) throw new ArgumentException($"Expected {count} consecutive pad tokens at {ed} for grid {grid}.", nameof(inputIds));
            }

            int textLen = ed - st;
            for (int i = 0; i < textLen; i++) SetAll(positions, n, st + i, next + i);
            int baseIndex = next + textLen;
            int cell = ed;
            for (int t = 0; t < gt; t++)
            {
                for (int h = 0; h < gh; h++)
                {
                    for (int w = 0; w < gw; w++)
                    {
                        positions[cell] = baseIndex + t;
                        positions[n + cell] = baseIndex + h;
                        positions[2 * n + cell] = baseIndex + w;
                        cell++;
                    }
                }
            }
            next = baseIndex + Math.Max(gt, Math.Max(gh, gw));
            st = ed + count;
        }
        for (int i = st; i < n; i++) SetAll(positions, n, i, next + (i - st));
        if (st < n) next += n - st;
        return new RopePositions(positions, n, next);
    }

    /// <summary>Positions of a text-only chunk continuing at <paramref name="startPosition"/> (t = h = w).</summary>
    public static RopePositions Text(int length, int startPosition)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        var positions = new int[3 * length];
        for (int i = 0; i < length; i++) SetAll(positions, length, i, startPosition + i);
        return new RopePositions(positions, length, startPosition + length);
    }

    private static void SetAll(int[] positions, int n, int index, int value)
    {
        positions[index] = value;
        positions[n + index] = value;
        positions[2 * n + index] = value;
    }

    private static int IndexOf(ReadOnlySpan<int> ids, int value, int start)
    {
        if (start >= ids.Length) return -1;
        int i = ids[start..].IndexOf(value);
        return i < 0 ? -1 : start + i;
    }
}
