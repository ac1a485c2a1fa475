#!/usr/bin/env python3
"""Build parity fixtures for Qwen3VL.Native with Hugging Face transformers as the oracle.

Runs on a GPU machine with torch + transformers 5.x (no network needed). See tools/reference/README.md.

A fixture is a directory:
  model/       HF checkpoint folder (bf16 safetensors, config, tokenizer, processor config, chat template,
               generation_config.json), written by transformers' own save_pretrained
  images/      PNG inputs used by the cases
  data/        float32 little-endian blobs (pixel values, logits)
  cases.json   inputs, transformers' outputs and reference logits/greedy tokens (fp32 compute)

Transformers code this script was written against (read via the code index, not run here):
  models/qwen3_vl/modeling_qwen3_vl.py      (Qwen3VLForConditionalGeneration.forward, get_rope_index with
                                              mm_token_type_ids in 5.x, rope_deltas, deepstack, RMSNorm = weight*x)
  models/qwen3_vl/configuration_qwen3_vl.py (text_config.rope_parameters in 5.x vs rope_theta+rope_scaling in 4.57)
  models/qwen3_vl/processing_qwen3_vl.py    (Qwen3VLProcessor(image_processor, tokenizer, video_processor,
                                              chat_template); returns mm_token_type_ids)
  models/qwen3_vl/video_processing_qwen3_vl.py, models/qwen2_vl/image_processing*_qwen2_vl*.py (smart_resize,
                                              patch order, size{shortest_edge,longest_edge})
Everything version-dependent is probed at run time and printed; nothing is silently assumed.
"""
import argparse
import hashlib
import inspect
import json
import math
import os
import platform
import shutil
import sys
import time
import traceback
import zlib

import numpy as np
import PIL
from PIL import Image

# --------------------------------------------------------------------------------------------------------------
# Qwen3-VL Instruct chat template (Qwen/Qwen3-VL-*-Instruct chat_template.json, "chat_template" value).
# Source: no copy of the hub file itself is in the code index; the text in the file below is byte-identical (checked with a
# diff) to two independent verbatim copies: the `chat_template_qwen3vl` string in a GUI-agent constants module and
# the Qwen3-VL template registered in a chat-template registry module (both found with the `find_string` search
# for "{%- if add_vision_id %}Picture"), and it matches the processor_config chat_template shown for
# Qwen/Qwen3-VL-30B-A3B-Instruct on a hub mirror page. The Instruct sizes (2B/4B/8B/30B) share this template.
# --------------------------------------------------------------------------------------------------------------
# The Qwen3-VL Instruct chat template: one file shared with the C# renderer, which embeds it.
CHAT_TEMPLATE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "csharp",
                                  "Qwen3VL.Native", "Processing", "Templates", "qwen3-vl-instruct.chat_template.jinja")
with open(CHAT_TEMPLATE_FILE, encoding="utf-8") as _f:
    CHAT_TEMPLATE = _f.read()

# Token ids of the Qwen vocabulary the engine relies on (checked against the tokenizer at run time).
SPECIAL_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}
IMAGE_PAD_ID = 151655
EOS_IDS = [151645, 151643]

# Published Qwen3-VL Instruct sampling defaults (generation_config.json); the values match Qwen's documented
# recommendation for the VL Instruct models (top_p 0.8, top_k 20, temperature 0.7, repetition_penalty 1.0).
GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": EOS_IDS,
    "top_k": 20,
    "top_p": 0.8,
    "temperature": 0.7,
    "repetition_penalty": 1.0,
}

# Qwen3-VL image processor settings (preprocessor_config.json of Qwen/Qwen3-VL-2B-Instruct).
IMAGE_PROCESSOR_SETTINGS = {
    "do_resize": True,
    "size": {"shortest_edge": 65536, "longest_edge": 16777216},
    "min_pixels": 65536,  # legacy spelling, overrides size in older processors; same values
    "max_pixels": 16777216,
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "do_rescale": True,
    "rescale_factor": 1.0 / 255.0,
    "do_normalize": True,
    "do_convert_rgb": True,
    "resample": 3,  # PIL BICUBIC
}

PRESETS = {
    # tied embeddings, hidden 32, q dim 4*32=128 != hidden, MLP 88 (not a multiple of 32), 3 layers,
    # deepstack at [0, 2], full 48x48 position-embedding table.
    # Size: the 151936 x hidden bf16 embedding dominates (hidden 32 -> 9.7 MB); model/tokenizer.json adds ~11 MB.
    "tiny-tied": {
        "text": dict(hidden_size=32, intermediate_size=88, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=32, mrope_section=[6, 5, 5], max_position_embeddings=262144),
        "vision": dict(depth=4, hidden_size=64, num_heads=4, intermediate_size=128,
                       deepstack_visual_indexes=[0, 2], num_position_embeddings=2304),
        "tie": True, "embed_std": 1.0, "shard": "2GB", "cases_skip": [],
    },
    # untied (separate lm_head), hidden 24, head_dim 16 (q dim 64), MLP 72, 2 layers, one deepstack merger at
    # vision block 1, 16x16 position-embedding table (interpolation from a smaller grid). 2 x 7.3 MB embeddings.
    "tiny-untied": {
        "text": dict(hidden_size=24, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, mrope_section=[4, 2, 2], max_position_embeddings=262144),
        "vision": dict(depth=3, hidden_size=64, num_heads=4, intermediate_size=96,
                       deepstack_visual_indexes=[1], num_position_embeddings=256),
        "tie": False, "embed_std": 1.0, "shard": "2GB",
        # size budget: the untied fixture carries a subset of the default cases
        "cases_skip": ["one_image", "multi_turn_image_first", "system_rgba"],
    },
    # exact Qwen/Qwen3-VL-2B-Instruct shapes, random weights, sharded save
    "full-2b": {
        "text": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                     num_key_value_heads=8, head_dim=128, mrope_section=[24, 20, 20], max_position_embeddings=262144),
        "vision": dict(depth=24, hidden_size=1024, num_heads=16, intermediate_size=4096,
                       deepstack_visual_indexes=[5, 11, 17], num_position_embeddings=2304),
        "tie": True, "embed_std": 0.1, "shard": "2GB", "cases_skip": [],
    },
}
ROPE_THETA = 5000000.0


def log(*a):
    print(*a, flush=True)


def warn(msg):
    print("!!! WARNING: " + msg, flush=True)


def die(msg):
    print("!!! FATAL: " + msg, flush=True)
    sys.exit(2)


def accepts(fn, name):
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def has_var_kw(fn):
    try:
        return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True


def filter_kwargs(cls, kw, what):
    """Drop kwargs a strict (no **kwargs) constructor would reject; print what was dropped."""
    if has_var_kw(cls.__init__):
        return dict(kw)
    params = inspect.signature(cls.__init__).parameters
    out = {k: v for k, v in kw.items() if k in params}
    dropped = sorted(set(kw) - set(out))
    if dropped:
        log(f"  note: {what} does not take {dropped}; dropped")
    return out


# --------------------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------------------
def synth_rgb(w, h, seed):
    """Smooth gradients + shapes + mild noise, deterministic (numpy only)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u = x / max(w - 1, 1)
    v = y / max(h - 1, 1)
    ph = (seed % 17) * 0.37
    r = 127.5 + 127.5 * np.sin(2 * np.pi * (1.3 * u + 0.4 * v) + ph)
    g = 255.0 * (0.8 * u + 0.2 * v)
    b = 127.5 + 127.5 * np.cos(2 * np.pi * (1.7 * v - 0.9 * u * v) + 2 * ph)
    img = np.stack([r, g, b], axis=-1)
    cx, cy, rad = 0.33 * w, 0.58 * h, 0.22 * min(w, h)
    img[(x - cx) ** 2 + (y - cy) ** 2 <= rad ** 2] = [232, 40, 58]
    img[int(0.12 * h):int(0.45 * h) + 1, int(0.58 * w):int(0.9 * w) + 1] = [22, 92, 221]
    line = np.abs((y / max(h, 1)) - (x / max(w, 1))) < (1.5 / max(w, h))  # 1-2 px diagonal
    img[line] = [250, 250, 250]
    # a checker patch (high frequency, shows resampling differences)
    cs = max(2, min(w, h) // 24)
    chk = (((x // cs) + (y // cs)) % 2 == 0) & (x < 0.25 * w) & (y < 0.25 * h)
    img[chk] = [10, 10, 10]
    img = img + rng.normal(0.0, 10.0, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_image(spec, path):
    w, h, mode, seed = spec["w"], spec["h"], spec["mode"], spec["seed"]
    rgb = synth_rgb(w, h, seed)
    if mode == "RGB":
        arr = rgb
    elif mode == "L":
        arr = np.clip(np.rint(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114), 0, 255).astype(np.uint8)
    elif mode == "RGBA":
        y, x = np.mgrid[0:h, 0:w]
        a = np.rint(255.0 * x / max(w - 1, 1)).astype(np.int64)   # horizontal alpha ramp 0..255
        a[: h // 4, :] = 255                                       # opaque band
        a[h // 4: h // 2, : w // 3] = 0                             # fully transparent block
        a[(x + y) % 7 == 0] = 128                                   # half-transparent dots
        arr = np.concatenate([rgb, a.clip(0, 255).astype(np.uint8)[..., None]], axis=-1)
    else:
        raise ValueError(mode)
    im = Image.fromarray(arr)
    assert im.mode == mode, (im.mode, mode)
    im.save(path, format="PNG")
    return path


IMAGES = {
    "rgb_300x200.png": dict(w=300, h=200, mode="RGB", seed=11),   # -> min_pixels upscale to 320x224
    "rgb_97x131.png": dict(w=97, h=131, mode="RGB", seed=12),     # odd sizes
    "rgb_50x37.png": dict(w=50, h=37, mode="RGB", seed=13),       # tiny, heavy min_pixels upscale
    "rgba_120x90.png": dict(w=120, h=90, mode="RGBA", seed=14),   # varying alpha
    "gray_160x100.png": dict(w=160, h=100, mode="L", seed=15),    # mode L
    "perf_448x448.png": dict(w=448, h=448, mode="RGB", seed=21),
    "perf_640x480.png": dict(w=640, h=480, mode="RGB", seed=22),
}


def img(name):
    return {"type": "image", "image": "images/" + name}


def txt(s):
    return {"type": "text", "text": s}


def default_cases():
    return [
        dict(name="text_only", messages=[
            {"role": "user", "content": [txt("Describe the weather on Mars in one sentence.")]}]),
        dict(name="one_image", messages=[
            {"role": "user", "content": [img("rgb_300x200.png"), txt("What is in this picture?")]}]),
        dict(name="two_images_text_between", n_positions=2, messages=[
            {"role": "user", "content": [
                txt("Compare these two pictures. First:"), img("rgb_97x131.png"),
                txt(" and now the second, a very small one:"), img("rgb_50x37.png"),
                txt(" Which one is brighter?")]}]),
        dict(name="multi_turn_image_first", n_positions=2, messages=[
            {"role": "user", "content": [img("gray_160x100.png"), txt("What shapes do you see?")]},
            {"role": "assistant", "content": [txt("A circle, a rectangle and a diagonal line.")]},
            {"role": "user", "content": [txt("Which of them is the largest?")]}]),
        dict(name="system_rgba", messages=[
            {"role": "system", "content": [txt("You are a terse assistant. Answer in five words or fewer.")]},
            {"role": "user", "content": [img("rgba_120x90.png"), txt("Is any part of this image transparent?")]}]),
        dict(name="unicode_text", messages=[
            {"role": "user", "content": [txt(
                "Translate to English:\n你好，世界！ 🌍🚀\n\tcafé naïve — ü ß Ω\n\n日本語のテキストも 👩\u200d💻 ok?  ")]}]),
    ]


def perf_case(processor, fixture_dir, target_tokens=1024):
    head = txt("Here are two images from a rendering test suite. The first one:")
    mid_intro = " Notes follow.\n"
    tail = txt(" And the second image:")
    sentences = []
    i = 0
    best = None
    while True:
        i += 1
        sentences.append(f"Note {i}: the quick brown fox number {(i * 7) % 13} jumps over {i % 5} lazy dogs "
                         f"near the river bank, counting {i * i} stones and {3 * i + 1} leaves.")
        msgs = [{"role": "user", "content": [
            head, img("perf_448x448.png"), txt(mid_intro + "\n".join(sentences)), tail, img("perf_640x480.png"),
            txt(" Summarise both images and all the notes above in detail.")]}]
        enc, _ = encode_direct(processor, msgs, fixture_dir)
        n = int(enc["input_ids"].shape[1])
        best = (msgs, n)
        if n >= target_tokens or i > 400:
            break
    log(f"  perf prompt: {len(sentences)} note sentences -> {best[1]} tokens")
    return dict(name="perf_1k_two_images", messages=best[0])


# --------------------------------------------------------------------------------------------------------------
# processor
# --------------------------------------------------------------------------------------------------------------
def build_tokenizer(tokenizer_json):
    import transformers
    specials = dict(eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None, bos_token=None)
    errors = []
    for how in ("tokenizer_file", "tokenizer_object"):
        try:
            if how == "tokenizer_file":
                tok = transformers.PreTrainedTokenizerFast(tokenizer_file=tokenizer_json, clean_up_tokenization_spaces=False,
                                                           **specials)
            else:
                from tokenizers import Tokenizer
                tok = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(tokenizer_json),
                                                           clean_up_tokenization_spaces=False, **specials)
            log(f"  tokenizer: {type(tok).__name__} via {how}, len={len(tok)}")
            return tok
        except Exception as e:  # noqa: BLE001
            errors.append(f"{how}: {e!r}")
    die("could not build the tokenizer: " + " | ".join(errors))


def build_image_processor():
    import transformers
    kw = dict(IMAGE_PROCESSOR_SETTINGS)
    last = None
    for cls_name in ("Qwen2VLImageProcessorFast", "Qwen2VLImageProcessor"):
        cls = getattr(transformers, cls_name, None)
        if cls is None:
            continue
        try:
            ip = cls(**kw)
            log(f"  image processor: {type(ip).__name__}")
            return ip
        except Exception as e:  # noqa: BLE001
            last = e
            warn(f"{cls_name}(**settings) failed: {e!r}")
    die(f"no Qwen2-VL image processor could be built: {last!r}")


def build_video_processor():
    import transformers
    cls = getattr(transformers, "Qwen3VLVideoProcessor", None)
    if cls is None:
        warn("transformers has no Qwen3VLVideoProcessor; the processor is built without one")
        return None
    try:
        vp = cls(patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5, 0.5, 0.5],
                 image_std=[0.5, 0.5, 0.5])
        log(f"  video processor: {type(vp).__name__}")
        return vp
    except Exception as e:  # noqa: BLE001
        warn(f"Qwen3VLVideoProcessor() failed ({e!r}); the processor is built without one")
        return None


def build_and_save_processor(tokenizer_json, model_dir):
    import transformers
    tok = build_tokenizer(tokenizer_json)
    ip = build_image_processor()
    vp = build_video_processor()
    kwargs = dict(image_processor=ip, tokenizer=tok, chat_template=CHAT_TEMPLATE)
    if vp is not None:
        kwargs["video_processor"] = vp
    try:
        proc = transformers.Qwen3VLProcessor(**kwargs)
    except Exception as e:  # noqa: BLE001
        if vp is None:
            die(f"Qwen3VLProcessor needs a video processor here and none could be built: {e!r}")
        raise
    tok.save_pretrained(model_dir)
    proc.save_pretrained(model_dir)
    return proc


def size_get(size, key):
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def check_processor(proc, tokenizer_json):
    ip = proc.image_processor
    tok = proc.tokenizer
    log(f"  reloaded processor: {type(proc).__name__}; image processor {type(ip).__name__}; "
        f"tokenizer {type(tok).__name__}; video processor {type(getattr(proc, 'video_processor', None)).__name__}")
    checks = {
        "size.shortest_edge": (size_get(getattr(ip, "size", None), "shortest_edge"), 65536),
        "size.longest_edge": (size_get(getattr(ip, "size", None), "longest_edge"), 16777216),
        "patch_size": (getattr(ip, "patch_size", None), 16),
        "temporal_patch_size": (getattr(ip, "temporal_patch_size", None), 2),
        "merge_size": (getattr(ip, "merge_size", None), 2),
        "image_mean": (list(getattr(ip, "image_mean", []) or []), [0.5, 0.5, 0.5]),
        "image_std": (list(getattr(ip, "image_std", []) or []), [0.5, 0.5, 0.5]),
    }
    for k, (got, want) in checks.items():
        ok = got == want if not isinstance(want, list) else [float(x) for x in got] == want
        log(f"    {k}: {got} {'OK' if ok else '!= expected ' + str(want)}")
        if not ok:
            die(f"reloaded image processor has {k}={got}, expected {want}")
    log(f"    resample: {getattr(ip, 'resample', None)}  do_convert_rgb: {getattr(ip, 'do_convert_rgb', None)}")
    for t, want in SPECIAL_IDS.items():
        got = tok.convert_tokens_to_ids(t)
        if got != want:
            die(f"tokenizer maps {t} to {got}, expected {want}")
    log("    special token ids OK")
    # the HF tokenizer must agree with the raw tokenizers library on the same tokenizer.json
    samples = ["Hello world", " Hello  world\n\n", "你好，世界！ 🌍🚀 café naïve", "a\tb\r\nc  123456 x=3.14",
               "<|im_start|>user\nhi<|im_end|>\n", "👩\u200d💻 ok?  ", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ ﬁ"]
    try:
        from tokenizers import Tokenizer
        raw = Tokenizer.from_file(tokenizer_json)
        for s in samples:
            a = raw.encode(s, add_special_tokens=False).ids
            b = tok(s, add_special_tokens=False)["input_ids"]
            if a != b:
                warn(f"HF tokenizer differs from raw tokenizers on {s!r}: {b} vs {a}")
        log("    tokenizer agrees with the raw tokenizers library on the samples (unless warned above)")
    except Exception as e:  # noqa: BLE001
        warn(f"raw tokenizers comparison skipped: {e!r}")
    # chat template sanity (exact expected text)
    msgs = [{"role": "system", "content": [txt("S")]},
            {"role": "user", "content": [txt("A"), {"type": "image", "image": "x.png"}, txt(" B")]},
            {"role": "assistant", "content": [txt("R")]},
            {"role": "user", "content": [txt("Q")]}]
    want = ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nA<|vision_start|><|image_pad|><|vision_end|> B"
            "<|im_end|>\n<|im_start|>assistant\nR<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")
    got = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    if isinstance(got, list):
        got = got[0]
    if got != want:
        die(f"chat template renders {got!r}, expected {want!r}")
    log("    chat template renders the expected ChatML text")


def to_hf_messages(messages, fixture_dir, image_as):
    out = []
    pil = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            out.append(dict(m))
            continue
        parts = []
        for p in content:
            if p.get("type") == "image":
                path = os.path.abspath(os.path.join(fixture_dir, p["image"]))
                im = Image.open(path)
                im.load()
                pil.append(im)
                parts.append({"type": "image", "image": path if image_as == "path" else im})
            else:
                parts.append(dict(p))
        out.append({**m, "content": parts})
    return out, pil


def encode_chat(processor, messages, fixture_dir, image_as):
    msgs, _ = to_hf_messages(messages, fixture_dir, image_as)
    enc = processor.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=True,
                                        return_tensors="pt")
    return enc


def encode_direct(processor, messages, fixture_dir):
    msgs, pil = to_hf_messages(messages, fixture_dir, "path")
    text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    if isinstance(text, list):
        text = text[0]
    kw = dict(text=[text], return_tensors="pt")
    if pil:
        kw["images"] = pil
    return processor(**kw), text


def same_encoding(a, b):
    diffs = []
    for k in ("input_ids", "image_grid_thw", "pixel_values"):
        x, y = a.get(k), b.get(k)
        if x is None and y is None:
            continue
        if (x is None) != (y is None) or tuple(x.shape) != tuple(y.shape):
            diffs.append(f"{k}: shape {None if x is None else tuple(x.shape)} vs {None if y is None else tuple(y.shape)}")
            continue
        d = (x.double() - y.double()).abs().max().item() if x.numel() else 0.0
        if d != 0.0:
            diffs.append(f"{k}: max abs diff {d:.3g}")
    return diffs


# --------------------------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------------------------
def make_config(preset):
    import transformers
    P = PRESETS[preset]
    t, v = dict(P["text"]), dict(P["vision"])
    mrope = t.pop("mrope_section")
    TextCfg = transformers.Qwen3VLTextConfig
    VisCfg = getattr(transformers, "Qwen3VLVisionConfig", None)
    if VisCfg is None:
        from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLVisionConfig as VisCfg
    text_kw = dict(vocab_size=151936, rms_norm_eps=1e-6, hidden_act="silu", attention_bias=False,
                   attention_dropout=0.0, tie_word_embeddings=P["tie"], use_cache=True, initializer_range=0.02,
                   bos_token_id=151643, eos_token_id=151645, **t)
    rope = {"rope_type": "default", "mrope_section": list(mrope), "mrope_interleaved": True}
    if accepts(TextCfg.__init__, "rope_parameters"):
        text_kw["rope_parameters"] = {**rope, "rope_theta": ROPE_THETA}
        rope_style = "rope_parameters (transformers 5)"
    else:
        text_kw["rope_theta"] = ROPE_THETA
        text_kw["rope_scaling"] = rope
        rope_style = "rope_theta + rope_scaling (transformers 4.57)"
    vis_kw = dict(hidden_act="gelu_pytorch_tanh", in_channels=3, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=t["hidden_size"], initializer_range=0.02, **v)
    text_kw = filter_kwargs(TextCfg, text_kw, "Qwen3VLTextConfig")
    vis_kw = filter_kwargs(VisCfg, vis_kw, "Qwen3VLVisionConfig")
    top_kw = filter_kwargs(transformers.Qwen3VLConfig, dict(
        text_config=text_kw, vision_config=vis_kw, image_token_id=151655, video_token_id=151656,
        vision_start_token_id=151652, vision_end_token_id=151653, tie_word_embeddings=P["tie"]), "Qwen3VLConfig")
    cfg = transformers.Qwen3VLConfig(**top_kw)
    # make sure both tie flags agree whatever the version reads
    for c in (cfg, cfg.text_config):
        try:
            c.tie_word_embeddings = P["tie"]
        except Exception as e:  # noqa: BLE001
            warn(f"could not set tie_word_embeddings on {type(c).__name__}: {e!r}")
    log(f"  config: rope spelled as {rope_style}")
    tc = cfg.text_config
    got_rope = getattr(tc, "rope_parameters", None) or getattr(tc, "rope_scaling", None)
    log(f"  text rope: {got_rope}  rope_theta attr: {getattr(tc, 'rope_theta', None)}")
    return cfg, mrope


def param_seed(seed, name):
    return (seed * 1000003 + zlib.crc32(name.encode("utf-8"))) % (2 ** 63 - 1)


def reinit_parameters(model, preset, seed):
    """Deterministic, non-degenerate re-initialisation of every parameter (CPU RNG, per-parameter seed)."""
    import torch
    P = PRESETS[preset]
    H = P["text"]["hidden_size"]
    embed = model.get_input_embeddings().weight
    seen = set()
    counts = {}
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(remove_duplicate=False), key=lambda kv: kv[0]):
            if p.data_ptr() in seen:
                continue
            seen.add(p.data_ptr())
            g = torch.Generator(device="cpu").manual_seed(param_seed(seed, name))
            shape = tuple(p.shape)
            if p is embed or name.endswith("embed_tokens.weight"):
                kind, std, mean = "embed", P["embed_std"], 0.0
            elif name.endswith("lm_head.weight"):
                kind, std, mean = "lm_head", 4.0 / math.sqrt(H), 0.0
            elif name.endswith("pos_embed.weight"):
                kind, std, mean = "pos_embed", P.get("pos_embed_std", 0.5), 0.0
            elif name.endswith(".bias"):
                kind, std, mean = "bias", P.get("bias_std", 0.02), 0.0
            elif name.endswith(".weight") and len(shape) == 1:
                # RMSNorm (text, incl. q_norm/k_norm) and LayerNorm (vision) weights; Qwen3 RMSNorm computes
                # weight * x_hat (not (1 + weight) * x_hat), so values around 1 are the real scale.
                kind, std, mean = "norm", P.get("norm_std", 0.1), 1.0
            elif name.endswith(".weight") and len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                kind, std, mean = "linear", 1.0 / math.sqrt(fan_in), 0.0
            else:
                die(f"no init rule for parameter {name} {shape}")
            w = torch.empty(shape, dtype=torch.float32).normal_(mean=0.0, std=1.0, generator=g)
            p.copy_((w * std + mean).to(p.dtype))
            counts[kind] = counts.get(kind, 0) + 1
    log(f"  re-initialised parameters by kind: {counts}")


def model_tied(model):
    lm = getattr(model, "lm_head", None)
    return lm is not None and lm.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def param_checksums(model):
    import torch
    out = {}
    with torch.no_grad():
        for n, p in model.named_parameters():
            out[n] = float(p.detach().to("cpu", torch.float64).sum().item())
    return out


def save_model(model, model_dir, shard):
    try:
        model.save_pretrained(model_dir, safe_serialization=True, max_shard_size=shard)
    except TypeError:
        model.save_pretrained(model_dir, max_shard_size=shard)


def safetensor_keys(model_dir):
    from safetensors import safe_open
    keys = {}
    for f in sorted(os.listdir(model_dir)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(model_dir, f), framework="pt") as sf:
                for k in sf.keys():
                    try:
                        dt = str(sf.get_slice(k).get_dtype())
                    except Exception:  # noqa: BLE001
                        dt = str(sf.get_tensor(k).dtype)
                    keys[k] = (f, dt)
    return keys


def build_model_folder(args, model_dir):
    import torch
    import transformers
    P = PRESETS[args.preset]
    cfg, mrope = make_config(args.preset)
    t0 = time.time()
    torch.manual_seed(args.seed)
    model = transformers.Qwen3VLForConditionalGeneration(cfg)
    model.eval()
    log(f"  model constructed in {time.time() - t0:.1f}s; tied={model_tied(model)}")
    if model_tied(model) != P["tie"]:
        if P["tie"] and hasattr(model, "tie_weights"):
            model.tie_weights()
        if model_tied(model) != P["tie"]:
            die(f"embedding tie state {model_tied(model)} != requested {P['tie']}")
    t0 = time.time()
    reinit_parameters(model, args.preset, args.seed)
    log(f"  parameters re-initialised in {time.time() - t0:.1f}s")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"  parameters: {n_params:,}")
    # rotary sanity: inv_freq for theta 5e6 and the interleaved M-RoPE sections
    rot = model.model.language_model.rotary_emb
    hd = P["text"]["head_dim"]
    want = 1.0 / (ROPE_THETA ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rel = ((rot.inv_freq.double().cpu() - want).abs() / want).max().item()
    log(f"  rotary: inv_freq rel err {rel:.2e}, mrope_section {list(rot.mrope_section)}, "
        f"attention_scaling {getattr(rot, 'attention_scaling', None)}")
    if rel > 1e-5 or list(rot.mrope_section) != list(mrope):
        die("text rotary embedding does not use theta 5e6 / the requested mrope_section")
    model = model.to(torch.bfloat16)
    sums = param_checksums(model)
    save_model(model, model_dir, P["shard"])
    keys = safetensor_keys(model_dir)
    dtypes = sorted({d for _, d in keys.values()})
    log(f"  saved {len(keys)} tensors in {len({f for f, _ in keys.values()})} file(s); dtypes {dtypes}")
    if P["tie"] and "lm_head.weight" in keys:
        warn("tied model but lm_head.weight was written to the checkpoint")
    if not P["tie"] and "lm_head.weight" not in keys:
        die("untied model but lm_head.weight is missing from the checkpoint")
    with open(os.path.join(model_dir, "generation_config.json"), "w") as f:
        json.dump({**GENERATION_CONFIG, "transformers_version": transformers.__version__}, f, indent=2)
        f.write("\n")
    del model
    return sums


FP8_QUANTIZATION = {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128],
                    "modules_to_not_convert": None, "dequantize": False, "scale_fmt": "float"}


def convert_to_fp8(model_dir, block=128):
    """Rewrites the saved bf16 folder as transformers' fine-grained FP8 format (what Qwen's -FP8 releases hold): every
    nn.Linear weight [N, K] becomes F8_E4M3 with an F32 <name>_scale_inv [ceil(N/128), ceil(K/128)], per block
    scale = amax / 448 (1 for an all-zero block), fp8 = round_to_e4m3(clamp(w / scale, +-448)); embeddings, norms,
    biases, the Conv3d patch embedding and the position table stay bf16. (transformers 5.17's quantize-on-load +
    save_pretrained leaves the scales uninitialised: tools/reference/probe_fp8.py, so the fixture writes them itself.)"""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    linear = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "attn.qkv", "attn.proj",
              "linear_fc1", "linear_fc2", "lm_head")
    files = [f for f in sorted(os.listdir(model_dir)) if f.endswith(".safetensors")]
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else None
    converted = 0
    for fn in files:
        path = os.path.join(model_dir, fn)
        out = {}
        with safe_open(path, "pt") as st:
            for k in st.keys():
                t = st.get_tensor(k)
                if k.endswith(".weight") and t.dim() == 2 and any(f"{m}.weight" in k for m in linear):
                    w = t.float()
                    N, K = w.shape
                    SN, SK = -(-N // block), -(-K // block)
                    pad = torch.zeros(SN * block, SK * block, dtype=torch.float32)
                    pad[:N, :K] = w
                    blocks = pad.view(SN, block, SK, block)
                    amax = blocks.abs().amax(dim=(1, 3))
                    scale = torch.where(amax > 0, amax / 448.0, torch.ones_like(amax))
                    q = (blocks / scale[:, None, :, None]).clamp(-448, 448).view(SN * block, SK * block)[:N, :K]
                    out[k] = q.to(torch.float8_e4m3fn).contiguous()
                    out[k + "_scale_inv"] = scale.contiguous()
                    if index is not None:
                        index["weight_map"][k + "_scale_inv"] = fn
                    converted += 1
                else:
                    out[k] = t
        save_file(out, path, metadata={"format": "pt"})
    if index is not None:
        with open(index_path, "w") as f:
            json.dump(index, f, indent=2)
    cfg_path = os.path.join(model_dir, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["quantization_config"] = FP8_QUANTIZATION
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    log(f"  FP8: {converted} linear weights converted to F8_E4M3 with 128x128 F32 block scales")


def load_model(model_dir, dtype, attn, device, sums=None, fp8=False):
    import torch
    import transformers
    cls = transformers.Qwen3VLForConditionalGeneration
    kw = dict(attn_implementation=attn, output_loading_info=True)
    if fp8:
        # The weight-exact reference of an FP8 checkpoint: its blocks dequantized (fp8 * scale) into fp32 weights.
        kw["quantization_config"] = transformers.FineGrainedFP8Config(dequantize=True)
    try:
        model, info = cls.from_pretrained(model_dir, dtype=dtype, **kw)
    except TypeError:
        model, info = cls.from_pretrained(model_dir, torch_dtype=dtype, **kw)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if "missing_keys" in bad and model_tied(model):
        rest = [k for k in bad["missing_keys"] if not str(k).endswith("lm_head.weight")]
        if rest:
            bad["missing_keys"] = rest
        else:
            del bad["missing_keys"]
    if bad:
        die(f"loading {model_dir} reported {bad}")
    if sums is not None:
        now = param_checksums(model)
        diff = [n for n in sums if n in now and now[n] != sums[n]]
        missing = [n for n in sums if n not in now]
        if diff or missing:
            die(f"reloaded weights differ from the saved ones: {diff[:5]} missing {missing[:5]}")
        log(f"  reloaded weights equal the saved bf16 values ({len(now)} tensors, exact checksums)")
    model = model.to(device).eval()
    pdt = {str(p.dtype) for p in model.parameters()}
    log(f"  loaded {type(model).__name__} dtype={pdt} attn={getattr(model.config, '_attn_implementation', attn)} "
        f"tied={model_tied(model)}")
    return model


# --------------------------------------------------------------------------------------------------------------
# reference computation
# --------------------------------------------------------------------------------------------------------------
def expected_rope_delta(ids, grids, merge=2):
    """Position bookkeeping as the reference doc describes it (used only as a cross-check)."""
    pos, i, g, n = 0, 0, 0, len(ids)
    maxp = -1
    while i < n:
        if ids[i] == IMAGE_PAD_ID:
            t, h, w = grids[g]
            g += 1
            cnt = t * (h // merge) * (w // merge)
            maxp = max(maxp, pos + max(t - 1, h // merge - 1, w // merge - 1))
            pos += max(h // merge, w // merge)
            i += cnt
        else:
            maxp = max(maxp, pos)
            pos += 1
            i += 1
    return maxp + 1 - n


def model_inputs(enc, fwd_params, device):
    out = {}
    for k, v in enc.items():
        if k in fwd_params:
            out[k] = v.to(device) if hasattr(v, "to") else v
    return out


def reset_rope(model):
    """Qwen3VLModel caches rope_deltas across calls; a stale value from the previous case must not leak."""
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "rope_deltas"):
        inner.rope_deltas = None


def hf_rope_delta(model, out, inputs):
    rd = getattr(out, "rope_deltas", None)
    if rd is not None:
        return int(rd.reshape(-1)[0].item()), "output.rope_deltas"
    m = model.model
    try:
        _, rd = m.get_rope_index(inputs["input_ids"], mm_token_type_ids=inputs.get("mm_token_type_ids"),
                                 image_grid_thw=inputs.get("image_grid_thw"), attention_mask=inputs.get("attention_mask"))
    except TypeError:
        _, rd = m.get_rope_index(inputs["input_ids"], inputs.get("image_grid_thw"), None, inputs.get("attention_mask"))
    return int(rd.reshape(-1)[0].item()), "get_rope_index"


def greedy(model, inputs, steps, fwd_params, device):
    import torch
    L = int(inputs["input_ids"].shape[1])
    reset_rope(model)
    out = model(**inputs, use_cache=True)
    past = out.past_key_values
    delta, delta_src = hf_rope_delta(model, out, inputs)
    cur = out.logits[0, -1].float()
    tokens, margins, step_logits = [], [], []
    for i in range(steps):
        top = torch.topk(cur, 2)
        tok = int(top.indices[0].item())
        tokens.append(tok)
        margins.append(float((top.values[0] - top.values[1]).item()))
        step_logits.append(cur.detach().cpu())
        if tok in EOS_IDS or i == steps - 1:
            break
        pos = L + i  # cache index of the token being fed
        kw = dict(input_ids=torch.tensor([[tok]], device=device),
                  attention_mask=torch.ones((1, pos + 1), dtype=inputs["attention_mask"].dtype, device=device),
                  past_key_values=past, use_cache=True,
                  position_ids=torch.full((3, 1, 1), pos + delta, dtype=torch.long, device=device))
        if "cache_position" in fwd_params:
            kw["cache_position"] = torch.tensor([pos], device=device)
        out = model(**kw)
        past = out.past_key_values
        cur = out.logits[0, -1].float()
    return tokens, margins, step_logits, delta, delta_src


def write_f32(path, t):
    arr = np.ascontiguousarray(t.detach().to("cpu").float().numpy().astype("<f4"))
    arr.tofile(path)
    return list(arr.shape), hashlib.sha256(arr.tobytes()).hexdigest()


def run_case(case, processor, model, fwd_params, args, fixture_dir, data_dir, written, model_bf16_dir=None):
    import torch
    name = case["name"]
    log(f"\n=== case {name}")
    route = None
    enc = None
    notes = []
    has_images = any(p.get("type") == "image" for m in case["messages"] if not isinstance(m["content"], str)
                     for p in m["content"])
    for image_as in ("path", "pil"):
        try:
            e = encode_chat(processor, case["messages"], fixture_dir, image_as)
        except Exception as ex:  # noqa: BLE001
            warn(f"apply_chat_template(tokenize=True) with images as {image_as} failed: {ex!r}")
            continue
        if has_images and e.get("pixel_values") is None:
            warn(f"apply_chat_template(tokenize=True) with images as {image_as} returned no pixel_values")
            continue
        enc, route = e, f"apply_chat_template(tokenize=True), images as {image_as}"
        break
    direct, prompt_text = encode_direct(processor, case["messages"], fixture_dir)
    if enc is None:
        enc, route = direct, "apply_chat_template(tokenize=False) + processor(text, images)"
    else:
        diffs = same_encoding(enc, direct)
        if diffs:
            warn(f"{name}: the two processor routes differ: {diffs}")
            notes.append("processor routes differ: " + "; ".join(diffs))
    log(f"  route: {route}; keys {sorted(enc.keys())}")
    ids = enc["input_ids"][0].tolist()
    L = len(ids)
    grids = enc["image_grid_thw"].tolist() if enc.get("image_grid_thw") is not None else []
    n_img_tok = sum(1 for x in ids if x == IMAGE_PAD_ID)
    if n_img_tok != sum(t * h * w // 4 for t, h, w in grids):
        die(f"{name}: {n_img_tok} image pads but grids {grids}")
    rec = dict(name=name, messages=case["messages"], add_generation_prompt=True, input_ids=ids)
    if grids:
        rec["image_grid_thw"] = grids
        pv = enc["pixel_values"]
        tmp = os.path.join(data_dir, f"{name}.pixel_values.f32")
        shape, sha = write_f32(tmp, pv)
        if sha in written:
            os.remove(tmp)
            rel = written[sha]
        else:
            rel = os.path.relpath(tmp, fixture_dir)
            written[sha] = rel
        rec["pixel_values_file"] = rel
        rec["pixel_values_shape"] = shape
        if any("pixel_values" in n for n in notes):
            # keep the other route's pixels too, so the engine can see what differs (e.g. alpha handling)
            shape2, _ = write_f32(os.path.join(data_dir, f"{name}.pixel_values_direct.f32"), direct["pixel_values"])
            rec["pixel_values_direct_file"] = f"data/{name}.pixel_values_direct.f32"
            rec["pixel_values_direct_note"] = "processor(text, images=[PIL as opened]) instead of apply_chat_template"
    inputs = model_inputs(enc, fwd_params, args.device)
    dropped = sorted(set(enc.keys()) - set(inputs.keys()))
    if dropped:
        log(f"  not passed to the model (not in forward signature): {dropped}")
    if grids and "mm_token_type_ids" in enc and "mm_token_type_ids" not in inputs:
        warn("processor returned mm_token_type_ids but the model forward does not take it")
    positions = case.get("positions")
    if positions is None:
        # last prompt position, plus (for the cases that ask for it) one in the middle of the prompt
        positions = [L - 1] if case.get("n_positions", 1) < 2 else [L - 1, L // 2]
        if case["name"].startswith("perf"):
            positions = list(range(L - 8, L))
    positions = [int(p) for p in positions]

    with torch.inference_mode():
        t0 = time.time()
        reset_rope(model)
        ref = model(**inputs, use_cache=False).logits[0].float()
        t_fwd = time.time() - t0
        sel = ref[positions]
        shape, _ = write_f32(os.path.join(data_dir, f"{name}.logits.f32"), sel)
        rec["logits_file"] = f"data/{name}.logits.f32"
        rec["logits_positions"] = positions
        last = ref[L - 1]
        lstd = float(last.std().item())

        tokens, margins, step_logits, delta, delta_src = greedy(model, inputs, args.greedy_steps, fwd_params,
                                                                args.device)
        d0 = float((step_logits[0] - last.cpu()).abs().max().item())
        log(f"  loop step-0 logits vs prompt forward last position: max abs diff {d0:.3g}")
        if d0 > 1e-3 * max(1.0, float(last.abs().max().item())):
            warn(f"{name}: cached prefill and no-cache forward disagree ({d0:.3g})")
        mine = expected_rope_delta(ids, grids)
        log(f"  rope delta: {delta} ({delta_src}); doc rule gives {mine}")
        if mine != delta:
            warn(f"{name}: rope delta {delta} from transformers != {mine} from the reference-doc rule")
            notes.append(f"rope delta hf {delta} != doc rule {mine}")
        # no-cache recompute of the greedy continuation (independent of our decode position bookkeeping)
        if len(tokens) > 1:
            full = torch.tensor([ids + tokens[:-1]], device=args.device)
            kw = dict(input_ids=full, attention_mask=torch.ones_like(full), use_cache=False)
            for k in ("pixel_values", "image_grid_thw"):
                if k in inputs:
                    kw[k] = inputs[k]
            if "mm_token_type_ids" in inputs:
                mm = inputs["mm_token_type_ids"]
                kw["mm_token_type_ids"] = torch.cat(
                    [mm, torch.zeros((1, len(tokens) - 1), dtype=mm.dtype, device=mm.device)], dim=1)
            reset_rope(model)
            full_logits = model(**kw).logits[0].float()
            dmax = 0.0
            for i, sl in enumerate(step_logits):
                dmax = max(dmax, float((full_logits[L - 1 + i].cpu() - sl).abs().max().item()))
            agree = [int(full_logits[L - 1 + i].argmax().item()) for i in range(len(tokens))] == tokens
            log(f"  greedy continuation recomputed without cache: max abs logit diff {dmax:.3g}, argmax agree {agree}")
            if not agree:
                warn(f"{name}: cached greedy decode disagrees with a no-cache recompute")
                notes.append("cached decode != no-cache recompute")
        # transformers' own generate (greedy) as a further cross-check
        try:
            reset_rope(model)
            gen = model.generate(**inputs, max_new_tokens=len(tokens), do_sample=False, num_beams=1)
            gtoks = gen[0, L:].tolist()
            ok = gtoks == tokens
            log(f"  model.generate(do_sample=False): {'matches' if ok else 'DIFFERS: ' + str(gtoks)}")
            if not ok:
                warn(f"{name}: generate() tokens {gtoks} != our loop {tokens}")
                notes.append(f"generate() gave {gtoks}")
        except Exception as e:  # noqa: BLE001
            warn(f"generate() cross-check skipped: {e!r}")
    rec["greedy_tokens"] = tokens
    rec["greedy_margins"] = margins
    rec["prompt_text"] = prompt_text
    rec["rope_delta"] = delta
    rec["num_image_tokens"] = n_img_tok
    rec["processor_route"] = route
    try:
        rec["greedy_text"] = processor.tokenizer.decode(tokens, skip_special_tokens=False)
    except Exception:  # noqa: BLE001
        pass
    if notes:
        rec["notes"] = notes
    summary = dict(case=name, L=L, n_img=len(grids), grids=grids, lstd=lstd, min_margin=min(margins),
                   tokens=tokens, fwd_s=t_fwd)
    return rec, summary, inputs


def bf16_logits(model_dir, cases_inputs, args, data_dir, recs):
    import torch
    log("\n=== bf16 reference (model in bf16, attn sdpa, same inputs)")
    model = load_model(model_dir, torch.bfloat16, "sdpa", args.device)
    with torch.inference_mode():
        for rec in recs:
            inputs = cases_inputs[rec["name"]]
            reset_rope(model)
            lg = model(**inputs, use_cache=False).logits[0].float()[rec["logits_positions"]]
            write_f32(os.path.join(data_dir, f"{rec['name']}.logits_bf16.f32"), lg)
            rec["logits_bf16_file"] = f"data/{rec['name']}.logits_bf16.f32"
            ref = torch.from_numpy(np.fromfile(os.path.join(os.path.dirname(data_dir), rec["logits_file"]),
                                               dtype="<f4").reshape(len(rec["logits_positions"]), -1))
            d = (lg.cpu() - ref).abs()
            agree = (lg.cpu().argmax(-1) == ref.argmax(-1)).tolist()
            rec["bf16_vs_fp32"] = dict(max_abs=float(d.max()), mean_abs=float(d.mean()), argmax_agree=agree)
            log(f"  {rec['name']}: bf16 vs fp32 logits max abs {float(d.max()):.4g}, mean abs {float(d.mean()):.4g}, "
                f"argmax agree {agree}")
    del model


def fmt_size(n):
    return f"{n / 1e6:8.2f} MB"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, help="path to the Qwen tokenizer.json")
    ap.add_argument("--out", required=True, help="fixture directory to create (must not exist or be empty)")
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--greedy-steps", type=int, default=8)
    ap.add_argument("--cases", default="default", choices=["default", "perf"])
    ap.add_argument("--attn", default="eager", choices=["eager", "sdpa"], help="attention for the fp32 reference")
    ap.add_argument("--force", action="store_true", help="delete --out first if it exists")
    ap.add_argument("--norm-std", type=float, default=None, help="std of the norm weights around 1 (preset: 0.1)")
    ap.add_argument("--bias-std", type=float, default=None, help="std of the biases (preset: 0.02)")
    ap.add_argument("--pos-embed-std", type=float, default=None, help="std of the vision position table (0.5)")
    ap.add_argument("--fp8", action="store_true",
                    help="write the checkpoint in fine-grained FP8 (convert_to_fp8) and take the reference from it "
                         "loaded with FineGrainedFP8Config(dequantize=True) in fp32")
    ap.add_argument("--tf32", action="store_true",
                    help="leave PyTorch's TF32 defaults (cuDNN convolutions in TF32) instead of full fp32: to reproduce "
                         "a reference made without this script's settings, not for fixtures")
    args = ap.parse_args()
    for key in ("norm_std", "bias_std", "pos_embed_std"):
        if getattr(args, key) is not None:
            PRESETS[args.preset][key] = getattr(args, key)

    import torch
    import transformers
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if not args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        try:
            torch.set_float32_matmul_precision("highest")
        except Exception:  # noqa: BLE001
            pass
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    dev_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "cpu"
    log(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"numpy {np.__version__}, PIL {PIL.__version__}")
    log(f"device {args.device} ({dev_name}); TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, "
        f"cudnn TF32 {torch.backends.cudnn.allow_tf32}")
    log(f"preset {args.preset}, seed {args.seed}, cases {args.cases}, greedy steps {args.greedy_steps}")
    if not os.path.isfile(args.tokenizer):
        die(f"tokenizer not found: {args.tokenizer}")

    out = os.path.abspath(args.out)
    if os.path.exists(out) and os.listdir(out):
        if not args.force:
            die(f"{out} exists and is not empty (use --force)")
        shutil.rmtree(out)
    model_dir, images_dir, data_dir = (os.path.join(out, d) for d in ("model", "images", "data"))
    for d in (model_dir, images_dir, data_dir):
        os.makedirs(d, exist_ok=True)

    t_all = time.time()
    log("\n--- model folder")
    sums = build_model_folder(args, model_dir)
    log("\n--- processor")
    build_and_save_processor(args.tokenizer, model_dir)
    processor = transformers.AutoProcessor.from_pretrained(model_dir)
    check_processor(processor, os.path.join(model_dir, "tokenizer.json")
                    if os.path.isfile(os.path.join(model_dir, "tokenizer.json")) else args.tokenizer)
    log(f"  model/ files: {sorted(os.listdir(model_dir))}")

    log("\n--- images")
    if args.cases == "default":
        wanted = {p["image"].split("/", 1)[1] for c in default_cases()
                  if c["name"] not in PRESETS[args.preset]["cases_skip"]
                  for m in c["messages"] if not isinstance(m["content"], str)
                  for p in m["content"] if p.get("type") == "image"}
    else:
        wanted = {f for f in IMAGES if f.startswith("perf_")}
    for fname in sorted(wanted):
        spec = IMAGES[fname]
        make_image(spec, os.path.join(images_dir, fname))
        log(f"  {fname}: {spec['w']}x{spec['h']} {spec['mode']}")

    if args.fp8:
        convert_to_fp8(model_dir)
    log("\n--- reference model (fp32 compute from the saved " + ("FP8 weights, dequantized" if args.fp8 else "bf16 weights") + ")")
    model = load_model(model_dir, torch.float32, args.attn, args.device, None if args.fp8 else sums, fp8=args.fp8)
    fwd_params = set(inspect.signature(model.forward).parameters)
    log(f"  forward takes: {sorted(p for p in fwd_params if p not in ('kwargs',))}")

    if args.cases == "default":
        cases = [c for c in default_cases() if c["name"] not in PRESETS[args.preset]["cases_skip"]]
    else:
        if args.preset != "full-2b":
            warn("--cases perf is meant for --preset full-2b")
        cases = [perf_case(processor, out)]
    recs, summaries, cases_inputs = [], [], {}
    written = {}
    for c in cases:
        rec, summ, inputs = run_case(c, processor, model, fwd_params, args, out, data_dir, written)
        recs.append(rec)
        summaries.append(summ)
        cases_inputs[c["name"]] = inputs
    del model
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    if args.cases == "perf" and not args.fp8:
        bf16_logits(model_dir, cases_inputs, args, data_dir, recs)

    P = PRESETS[args.preset]
    doc = {
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, {dev_name}, fp32 compute",
        "vocab_size": 151936,
        "meta": {
            "preset": args.preset, "seed": args.seed, "attn_implementation": args.attn,
            "tf32": False, "fp8": bool(args.fp8), "tied": P["tie"], "text": P["text"], "vision": P["vision"],
            "processor": type(processor).__name__, "image_processor": type(processor.image_processor).__name__,
            "tokenizer": type(processor.tokenizer).__name__, "generated_by": "tools/reference/make_fixtures.py",
            "positions_note": "logits_positions index input_ids; greedy_margins[i] = top1 - top2 at greedy step i "
                              "(step 0 = last prompt position)",
        },
        "cases": recs,
    }
    with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    # weights manifest (lets a regenerated full-2b folder be verified against a shipped fixture)
    man = {}
    for fn in sorted(os.listdir(model_dir)):
        p = os.path.join(model_dir, fn)
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                h.update(chunk)
        man[fn] = {"bytes": os.path.getsize(p), "sha256": h.hexdigest()}
    with open(os.path.join(out, "model_manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
        f.write("\n")

    log("\n--- summary")
    log(f"{'case':28s} {'len':>5s} {'img':>3s} {'logit std':>9s} {'min margin':>10s}  grid_thw / greedy tokens")
    for s in summaries:
        log(f"{s['case']:28s} {s['L']:5d} {s['n_img']:3d} {s['lstd']:9.3f} {s['min_margin']:10.4f}  "
            f"{s['grids']} / {s['tokens']}")
        if s["lstd"] < 1.0:
            warn(f"{s['case']}: logit std {s['lstd']:.3f} < 1 (flat logits)")
        if s["min_margin"] < 0.05:
            warn(f"{s['case']}: a greedy margin is {s['min_margin']:.4f} < 0.05 (argmax fragile)")
    log("\n--- files")
    total = 0
    for root, _, files in sorted(os.walk(out)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            n = os.path.getsize(p)
            total += n
            log(f"  {fmt_size(n)}  {os.path.relpath(p, out)}")
    log(f"  {fmt_size(total)}  TOTAL {out}")
    if args.preset.startswith("tiny") and total > 40e6:
        warn("tiny fixture is over 40 MB on disk (budget: 60 MB of unique content for both tiny fixtures)")
    log(f"done in {time.time() - t_all:.1f}s")


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(1)
