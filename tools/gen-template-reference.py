#!/usr/bin/env python3
"""Regenerates tests/csharp/Qwen3VL.Native.Tests/Processing/TestData/template-reference.json.

Renders the Qwen3-VL Instruct chat template (bindings/csharp/Qwen3VL.Native/Processing/Templates/qwen3-vl-instruct.chat_template.jinja, the text of
Qwen/Qwen3-VL-*-Instruct chat_template.json) with jinja2 configured exactly like transformers'
`_compile_jinja_template` (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, tojson as
json.dumps(ensure_ascii=False)). Needs only `jinja2`.
"""
import json
import os

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "csharp", "Qwen3VL.Native.Tests", "Processing", "TestData")


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
template = env.from_string(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "csharp", "Qwen3VL.Native", "Processing", "Templates", "qwen3-vl-instruct.chat_template.jinja"), encoding="utf-8").read())

IMG = {"type": "image", "image": "images/a.png"}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Météo d'une ville",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
cases = [
    {"name": "user_string", "messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": True},
    {"name": "user_string_no_gen", "messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": False},
    {"name": "system_and_image_first", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": [IMG, {"type": "text", "text": "Describe this image."}]}], "add_generation_prompt": True},
    {"name": "system_parts", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Part one. "}, {"type": "text", "text": "Part two."}, IMG]},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "add_generation_prompt": True},
    {"name": "interleaved_images", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare "}, IMG, {"type": "text", "text": " with "},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}, {"image": "images/b.png"},
        {"type": "text", "text": "\nWhich is brighter?"}, {"type": "video", "video": "v.mp4"}]}], "add_generation_prompt": True},
    {"name": "multi_turn", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [IMG, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And its colour?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Black"}, {"type": "text", "text": " and white."}]},
        {"role": "user", "content": [{"type": "text", "text": "Thanks 🙏"}]}], "add_generation_prompt": True},
    {"name": "vision_ids", "add_vision_id": True, "messages": [
        {"role": "user", "content": [IMG, {"type": "video", "video": "v.mp4"}, IMG, {"type": "text", "text": "x"}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "video", "video": "w.mp4"}, IMG]}], "add_generation_prompt": True},
    {"name": "late_system_and_unknown_role_ignored", "messages": [
        {"role": "user", "content": "a"}, {"role": "system", "content": "ignored"},
        {"role": "developer", "content": "ignored too"}, {"role": "user", "content": "b"}], "add_generation_prompt": True},
    {"name": "assistant_last_think_text", "messages": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nsimple\n</think>\n\n4"}], "add_generation_prompt": False},
    {"name": "tools_with_system", "tools": [WEATHER_TOOL, {"type": "function", "function": {"name": "noop", "parameters": {}}}],
     "messages": [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris and Zürich?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "n": 1, "x": 0.5, "big": 1e20, "tiny": 1e-05, "f": 1.0, "ok": True, "none": None, "list": [1, "two", {"k": "v"}], "s": "a\"b\\c\n\t\u00e9\u0001"}}},
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\"}"}}]},
        {"role": "tool", "content": "18°C"},
        {"role": "tool", "content": [{"type": "text", "text": "21°C"}, IMG]},
        {"role": "assistant", "content": "Paris 18°C, Zürich 21°C.", "tool_calls": [{"name": "noop", "arguments": {}}]},
        {"role": "user", "content": "Merci"}], "add_generation_prompt": True},
    {"name": "tools_without_system", "tools": [WEATHER_TOOL],
     "messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "r"}], "add_generation_prompt": True},
    {"name": "empty_tools_list", "tools": [], "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
     "add_generation_prompt": True},
    {"name": "special_text_in_content", "messages": [
        {"role": "user", "content": "literal <|image_pad|> and <|im_end|> in text\r\n\ttabs  "}], "add_generation_prompt": True},
]

for case in cases:
    case["expected"] = template.render(messages=case["messages"], tools=case.get("tools"),
                                       add_generation_prompt=case.get("add_generation_prompt", False),
                                       add_vision_id=case.get("add_vision_id", False))

out = os.path.join(DATA, "template-reference.json")
with open(out, "w", encoding="utf-8") as f:
    json.dump({"source": "jinja2 " + __import__("jinja2").__version__ + " rendering of qwen3-vl-instruct.chat_template.jinja",
               "cases": cases}, f, ensure_ascii=False, indent=1)
    f.write("\n")
print(f"wrote {len(cases)} cases to {out}")
