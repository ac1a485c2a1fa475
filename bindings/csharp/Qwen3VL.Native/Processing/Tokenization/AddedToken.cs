namespace Qwen3VL.Native.Processing.Tokenization;

/// <summary>A token added on top of the BPE vocabulary (for example <c>&lt;|im_start|&gt;</c>); matched literally in text.</summary>
/// <param name="Id">The token id.</param>
/// <param name="Content">The literal text of the token.</param>
/// <param name="IsSpecial">
/// Whether the token is "special": special tokens are dropped when decoding with <c>skipSpecialTokens</c>
/// (Qwen's <c>&lt;think&gt;</c> and <c>&lt;tool_call&gt;</c> are added tokens but not special).
/// </param>
public sealed record AddedToken(int Id, string Content, bool IsSpecial);

/// <summary>Ids of the Qwen2/Qwen3/Qwen3-VL control tokens (identical in every checkpoint of the family).</summary>
public static class QwenSpecialTokens
{
    /// <summary><c>&lt;|endoftext|&gt;</c>.</summary>
    public const int EndOfText = 151643;
    /// <summary><c>&lt;|im_start|&gt;</c>.</summary>
    public const int ImStart = 151644;
    /// <summary><c>&lt;|im_end|&gt;</c>.</summary>
    public const int ImEnd = 151645;
    /// <summary><c>&lt;|vision_start|&gt;</c>.</summary>
    public const int VisionStart = 151652;
    /// <summary><c>&lt;|vision_end|&gt;</c>.</summary>
    public const int VisionEnd = 151653;
    /// <summary><c>&lt;|image_pad|&gt;</c>.</summary>
    public const int ImagePad = 151655;
    /// <summary><c>&lt;|video_pad|&gt;</c>.</summary>
    public const int VideoPad = 151656;

    /// <summary>Text of <c>&lt;|image_pad|&gt;</c>.</summary>
    public const string ImagePadText = "<|image_pad|>";
    /// <summary>Text of <c>&lt;|video_pad|&gt;</c>.</summary>
    public const string VideoPadText = "<|video_pad|>";
}
