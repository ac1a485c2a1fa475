"""Writes image-preprocessing oracle data with transformers' Qwen2VLImageProcessor (Qwen3-VL settings).

Usage: python gen_image_oracle.py OUT_DIR
OUT_DIR/images/*: the inputs; OUT_DIR/oracle.json: per image grid_thw, shape and the .f32 file of pixel_values;
OUT_DIR/resize/*.u8 + resize.json: raw torchvision uint8 bicubic-antialias resizes (for a bit-exact resampler check).
"""
import io, json, os, sys
import numpy as np
import torch
from PIL import Image
import torchvision
from torchvision.transforms.v2 import functional as tvF
import transformers
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

out = sys.argv[1]
os.makedirs(f"{out}/images", exist_ok=True)
os.makedirs(f"{out}/resize", exist_ok=True)
rng = np.random.default_rng(1234)

def smooth(h, w, c):
    # random but smooth-ish content so JPEG/WebP are meaningful, plus some noise
    y, x = np.mgrid[0:h, 0:w]
    base = [(np.sin(x / (7 + 5 * k)) * np.cos(y / (11 + 3 * k)) * 100 + 128) for k in range(c)]
    a = np.stack(base, -1) + rng.normal(0, 25, (h, w, c))
    return np.clip(a, 0, 255).astype(np.uint8)

imgs = {}
imgs["rgb_down.png"] = Image.fromarray(smooth(700, 1100, 3))
imgs["rgb_up_odd.png"] = Image.fromarray(smooth(37, 151, 3))
imgs["rgb_noise_odd.png"] = Image.fromarray(rng.integers(0, 256, (333, 517, 3), dtype=np.uint8))
imgs["rgb_exact.png"] = Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8))
rgba = smooth(300, 200, 4); rgba[..., 3] = rng.integers(0, 256, (300, 200), dtype=np.uint8); rgba[:50, :, 3] = 0
imgs["rgba.png"] = Image.fromarray(rgba, "RGBA")
imgs["gray.png"] = Image.fromarray(smooth(257, 263, 1)[..., 0], "L")
la = smooth(120, 90, 2); imgs["gray_alpha.png"] = Image.fromarray(la, "LA")
p = Image.fromarray(smooth(99, 141, 3)).quantize(64)
p.info["transparency"] = 5
imgs["palette_trns.png"] = p
g16 = (rng.integers(0, 600, (80, 120))).astype(np.uint16)
imgs["gray16.png"] = Image.fromarray(g16, "I;16")
imgs["photo.jpg"] = Image.fromarray(smooth(480, 640, 3))
imgs["gray.jpg"] = Image.fromarray(smooth(200, 300, 1)[..., 0], "L")
imgs["pic.bmp"] = Image.fromarray(smooth(101, 77, 3))
gif = Image.fromarray(smooth(90, 130, 3)).quantize(200); gif.info["transparency"] = 3
imgs["anim.gif"] = gif
imgs["lossless.webp"] = Image.fromarray(smooth(150, 170, 3))
imgs["alpha.webp"] = Image.fromarray(rgba, "RGBA")

for name, im in imgs.items():
    kw = {}
    if name.endswith(".jpg"): kw = {"quality": 90}
    if name == "lossless.webp" or name == "alpha.webp": kw = {"lossless": True}
    if name.endswith(".gif"): kw = {"transparency": 3}
    im.save(f"{out}/images/{name}", **kw)

# 16-bit RGB PNG written raw by numpy -> PIL cannot write RGB;16 directly; use a tiny writer
import zlib, struct
def png16rgb(path, arr):
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
png16rgb(f"{out}/images/rgb16.png", rng.integers(0, 65536, (64, 96, 3)).astype(np.uint16))

proc = Qwen2VLImageProcessor(patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                             size={"shortest_edge": 65536, "longest_edge": 16777216})
meta = {"versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "transformers": transformers.__version__,
                     "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "processor": type(proc).__name__, "backend": getattr(proc, "backend", "?"), "images": []}
for name in sorted(os.listdir(f"{out}/images")):
    im = Image.open(f"{out}/images/{name}")
    mode = im.mode
    r = proc(images=[im], return_tensors="pt")
    pv = r["pixel_values"].numpy().astype("<f4")
    pv.tofile(f"{out}/{name}.f32")
    meta["images"].append({"name": name, "mode": mode, "size": list(im.size), "grid_thw": r["image_grid_thw"].tolist(), "shape": list(pv.shape), "file": f"{name}.f32"})
    # also the budget-limited variant
    r2 = proc(images=[Image.open(f"{out}/images/{name}")], min_pixels=4096, max_pixels=128 * 128, return_tensors="pt")
    pv2 = r2["pixel_values"].numpy().astype("<f4"); pv2.tofile(f"{out}/{name}.small.f32")
    meta["images"][-1]["small"] = {"grid_thw": r2["image_grid_thw"].tolist(), "shape": list(pv2.shape), "file": f"{name}.small.f32"}

# raw resampler checks
rs = []
for i, (h, w, oh, ow) in enumerate([(333, 517, 320, 512), (37, 151, 131, 517), (700, 1100, 96, 160), (64, 64, 200, 31), (5, 7, 3, 2), (1000, 3, 17, 300)]):
    a = torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8))
    b = tvF.resize(a, [oh, ow], interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
    a.permute(1, 2, 0).contiguous().numpy().tofile(f"{out}/resize/{i}.in.u8")
    b.permute(1, 2, 0).contiguous().numpy().tofile(f"{out}/resize/{i}.out.u8")
    rs.append({"index": i, "in": [h, w], "out": [oh, ow], "dtype": str(b.dtype)})
meta["resize"] = rs
json.dump(meta, open(f"{out}/oracle.json", "w"), indent=1)
print(json.dumps({k: v for k, v in meta.items() if k != "images"}, indent=1))
for m in meta["images"]: print(m["name"], m["mode"], m["size"], m["grid_thw"])
