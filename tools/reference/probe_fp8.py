#!/usr/bin/env python3
"""Probe (issue 14): what transformers' fine-grained FP8 format looks like when saved, on the tiny fixture.
Loads tests/fixtures/tiny-tied/model with FineGrainedFP8Config(), saves it, lists the tensors (name, dtype, shape) and
the quantization_config, then loads the saved folder with dequantize=True in fp32 and runs one text forward against
the bf16 model in fp32 (relative L2 of the logits). Writes under $OUT/fp8-probe."""
import json, os, sys, traceback
import torch, transformers
from safetensors import safe_open

out = os.path.join(os.environ.get("OUT", "/tmp/out"), "fp8-probe")
os.makedirs(out, exist_ok=True)
src = "tests/fixtures/tiny-tied/model"
print("torch", torch.__version__, "transformers", transformers.__version__)
cls = transformers.Qwen3VLForConditionalGeneration
try:
    q = transformers.FineGrainedFP8Config()
    print("FineGrainedFP8Config:", q.to_dict())
    m = cls.from_pretrained(src, dtype=torch.bfloat16, quantization_config=q, device_map="cuda")
    m.save_pretrained(os.path.join(out, "model"))
except Exception:
    traceback.print_exc()
    sys.exit(1)
cfg = json.load(open(os.path.join(out, "model", "config.json")))
print("quantization_config:", json.dumps(cfg.get("quantization_config"), indent=1))
for f in sorted(os.listdir(os.path.join(out, "model"))):
    if not f.endswith(".safetensors"): continue
    with safe_open(os.path.join(out, "model", f), "pt") as st:
        for k in sorted(st.keys()):
            t = st.get_slice(k)
            print(f"{k:70s} {t.get_dtype():10s} {t.get_shape()}")
ids = torch.tensor([[151644, 872, 198, 9707, 11, 1246, 525, 498, 30, 151645]], device="cuda")
ref = cls.from_pretrained(src, dtype=torch.float32, device_map="cuda")
for label, kw in [("dequantize=True", dict(quantization_config=transformers.FineGrainedFP8Config(dequantize=True)))]:
    try:
        dq = cls.from_pretrained(os.path.join(out, "model"), dtype=torch.float32, device_map="cuda", **kw)
        with torch.no_grad():
            a = ref(input_ids=ids).logits.float(); b = dq(input_ids=ids).logits.float()
        print(label, "rel L2 vs bf16-weights fp32:", float((a - b).norm() / a.norm()),
              "top1 agree:", float((a.argmax(-1) == b.argmax(-1)).float().mean()))
    except Exception:
        traceback.print_exc()
