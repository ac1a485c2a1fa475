namespace Qwen3VL.Native.Tests.Shared;

/// <summary>
/// How far one set of logits rows is from another (the reference): relative L2 of each row, whether the top-1 token agrees,
/// and the KL divergence KL(reference || ours) of the softmax distributions. Used by the quantized-weights tests and the
/// parity runner (linked into both).
/// </summary>
internal readonly record struct LogitQuality(double MaxRelativeL2, double MeanRelativeL2, int Top1Agree, int Rows, double MeanKl, double MaxKl)
{
    /// <summary>Compares <paramref name="ours"/> with <paramref name="reference"/>, both [rows, vocab] row-major.</summary>
    public static LogitQuality Of(ReadOnlySpan<float> ours, ReadOnlySpan<float> reference, int vocab)
    {
        if (ours.Length != reference.Length || vocab <= 0 || ours.Length % vocab != 0)
            throw new ArgumentException($"logits of {ours.Length} and {reference.Length} values are not rows of {vocab}");
        int rows = ours.Length / vocab, agree = 0;
        double maxRel = 0, sumRel = 0, sumKl = 0, maxKl = 0;
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> a = ours.Slice(r * vocab, vocab), b = reference.Slice(r * vocab, vocab);
            double num = 0, den = 0;
            int topA = 0, topB = 0;
            for (int i = 0; i < vocab; i++)
            {
                double d = (double)a[i] - b[i];
                num += d * d;
                den += (double)b[i] * b[i];
                if (a[i] > a[topA]) topA = i;
                if (b[i] > b[topB]) topB = i;
            }
            double rel = Math.Sqrt(num / den);
            maxRel = Math.Max(maxRel, rel);
            sumRel += rel;
            if (topA == topB) agree++;
            double kl = Kl(b, a);
            sumKl += kl;
            maxKl = Math.Max(maxKl, kl);
        }
        return new LogitQuality(maxRel, sumRel / rows, agree, rows, sumKl / rows, maxKl);
    }

    /// <summary>KL(p || q) of softmax(p) and softmax(q), in nats, in double with the maxima subtracted.</summary>
    private static double Kl(ReadOnlySpan<float> p, ReadOnlySpan<float> q)
    {
        double mp = double.NegativeInfinity, mq = double.NegativeInfinity;
        for (int i = 0; i < p.Length; i++)
        {
            mp = Math.Max(mp, p[i]);
            mq = Math.Max(mq, q[i]);
        }
        double zp = 0, zq = 0;
        for (int i = 0; i < p.Length; i++)
        {
            zp += Math.Exp(p[i] - mp);
            zq += Math.Exp(q[i] - mq);
        }
        double lzp = Math.Log(zp) + mp, lzq = Math.Log(zq) + mq, kl = 0;
        for (int i = 0; i < p.Length; i++)
        {
            double lp = p[i] - lzp, lq = q[i] - lzq;
            kl += Math.Exp(lp) * (lp - lq);
        }
        return Math.Max(0, kl);
    }

    public override string ToString() =>
        $"rel L2 max {MaxRelativeL2:E2} mean {MeanRelativeL2:E2}, top-1 {Top1Agree}/{Rows}, KL mean {MeanKl:E2} max {MaxKl:E2}";
}
