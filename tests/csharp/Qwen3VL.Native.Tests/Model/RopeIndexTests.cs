using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing;
using Qwen3VL.Native.Tests.Processing;

namespace Qwen3VL.Native.Tests.Model;

public sealed class RopeIndexTests
{
    private const int Pad = 151655, Start = 151652, End = 151653, Video = 151656;

    public static TheoryData<string, string> Cases => FixtureCatalog.AllCases();

    [Theory]
    [MemberData(nameof(Cases))]
    public void RopeDeltaMatchesFixture(string fixtureDirectory, string caseName)
    {
        FixtureCase c = FixtureCatalog.GetCase(fixtureDirectory, caseName);
        int? delta = c.RopeDelta;
        if (delta is null) Assert.Skip($"{caseName}: the fixture records no rope_delta (its logits parity covers the positions)");
        RopePositions p = RopeIndex.Compute(c.InputIds, c.ImageGridThw.Select(g => new GridThw(g[0], g[1], g[2])).ToArray(), null, 2, Pad, Video, Start);
        Assert.Equal(delta.Value, p.RopeDelta());
        Assert.Equal(c.InputIds.Length, p.Length);
    }

    [Fact]
    public void ImageBlockUsesGridPositionsAndTextResumesAfterMaximum()
    {
        // text text <vs> [2x3 merged grid = 6 pads] <ve> text
        int[] ids = [10, 11, Start, Pad, Pad, Pad, Pad, Pad, Pad, End, 12];
        RopePositions p = RopeIndex.Compute(ids, [new GridThw(1, 4, 6)], null, 2, Pad, Video, Start);
        int[] t = [0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7];
        int[] h = [0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7];
        int[] w = [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7];
        Assert.Equal(t, Enumerable.Range(0, ids.Length).Select(i => p[0, i]));
        Assert.Equal(h, Enumerable.Range(0, ids.Length).Select(i => p[1, i]));
        Assert.Equal(w, Enumerable.Range(0, ids.Length).Select(i => p[2, i]));
        Assert.Equal(8, p.NextPosition);
        Assert.Equal(8 - 11, p.RopeDelta());
    }

    [Fact]
    public void TextOnlyIsARange()
    {
        RopePositions p = RopeIndex.Compute([1, 2, 3], [], null, 2, Pad, Video, Start, startPosition: 5);
        Assert.Equal(new[] { 5, 6, 7, 5, 6, 7, 5, 6, 7 }, p.Positions);
        Assert.Equal(2, p.RopeDelta(cacheOffset: 3));
    }

    [Fact]
    public void MismatchedGridsAreRejected()
    {
        Assert.Throws<ArgumentException>(() => RopeIndex.Compute([Start, Pad, Pad, End], [new GridThw(1, 4, 4)], null, 2, Pad, Video, Start));
        Assert.Throws<ArgumentException>(() => RopeIndex.Compute([Start, Pad, End], [], null, 2, Pad, Video, Start));
    }

    [Fact]
    public void VisionRotaryPositionsFollowMergeWindows()
    {
        int[] pos = VisionTower.RotaryPositions([new GridThw(1, 2, 4)], 2);
        // window (0,0): (0,0) (0,1) (1,0) (1,1); window (0,1): (0,2) (0,3) (1,2) (1,3)
        Assert.Equal(new[] { 0, 0, 0, 1, 1, 0, 1, 1, 0, 2, 0, 3, 1, 2, 1, 3 }, pos);
        Assert.Equal(new[] { 0, 8, 24 }, VisionTower.Segments([new GridThw(1, 2, 4), new GridThw(1, 4, 4)]));
    }
}
