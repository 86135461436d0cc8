#!/usr/bin/env python3
"""Writes the tokenizer golden data in tests/golden/tokenizer/.

Trains two small byte-level BPE tokenizers with Hugging Face `tokenizers` and records, for a few
hundred test strings, the ids HF produces and HF's decodings, so that the C++ tokenizer can be
checked against them:

  gpt2/      ByteLevel(use_regex=True) pre-tokenizer, as GPT-2 and GPT-NeoX (xLSTM-7b) use.
  llama3/    Sequence[Split(Llama-3 regex), ByteLevel(use_regex=False)] with ignore_merges, and
             merges written in the legacy "a b" string form.
  prefix_space/  the gpt2 model with ByteLevel(add_prefix_space=True).
  nfc/       the gpt2 model with an NFC normalizer (as GPT-NeoX / xLSTM-7b use) and a normalized
             added token written in decomposed form.
To save space, prefix_space/ and nfc/ hold only golden.json: it names gpt2/tokenizer.json and
gives a "config_override" (top-level keys to replace in it).

Each directory holds tokenizer.json (compact JSON) and golden.json: a header plus "cases" ({text, ids, decoded,
decoded_skip_special}) and "decode_cases" ({ids, decoded, decoded_skip_special}) whose id lists
cut UTF-8 characters apart.

The training corpus is a fixed list of Python standard library modules plus multilingual text
written below; a seeded generator makes the random cases. The stdlib text depends on the Python
version, so regenerating elsewhere may change the vocab: the committed files are what tests use.

Usage: pip install tokenizers && python3 tools/golden/make_tokenizer_golden.py
"""
import json
import os
import random
import sysconfig

import tokenizers
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, trainers)

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "tokenizer")

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

STDLIB_MODULES = ["textwrap.py", "string.py", "heapq.py", "bisect.py", "functools.py",
                  "json/encoder.py", "json/decoder.py", "base64.py", "fnmatch.py", "shlex.py"]

MULTILINGUAL = [
    "The quick brown fox jumps over the lazy dog. It's what they've said; we'll see, I'd guess.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Größe, Straße, Mädchen.",
    "Le cœur a ses raisons que la raison ne connaît point. Où est l'hôtel ? Ça va très bien.",
    "El veloz murciélago hindú comía feliz cardillo y kiwi. ¿Dónde está la estación? ¡Olé!",
    "Съешь же ещё этих мягких французских булок, да выпей чаю. Привет, мир! Москва — столица.",
    "Τάχιστη αλώπηξ βαφής ψημένη γη, δρασκελίζει υπέρ νωθρού κυνός. Καλημέρα κόσμε.",
    "我能吞下玻璃而不伤身体。你好，世界！今天天气很好，我们去公园散步吧。中华人民共和国。",
    "いろはにほへと ちりぬるを わかよたれそ つねならむ。カタカナとひらがなと漢字。東京都。",
    "다람쥐 헌 쳇바퀴에 타고파. 안녕하세요, 세계! 한국어 문장입니다.",
    "نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر ومغلف بجلد أزرق. مرحبا بالعالم.",
    "דג סקרן שט בים מאוכזב ולפתע מצא חברה. שלום עולם!",
    "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम। नमस्ते दुनिया।",
    "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน สวัสดีชาวโลก",
    "ქართული ენა მსოფლიოში ერთ-ერთი უძველესი ენაა. Հայերեն լեզու. বাংলা ভাষা। தமிழ் மொழி.",
    "Emoji: 😀 😂 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇯🇵 1️⃣ 🎉🎉🎉 café naïve résumé Zürich",
    "Numbers: 0 1 2 3 42 314159 2.71828 1,000,000 ٣٤٥ १२३ ½ ² ①②③ 10^9 3e-5 0xFF",
]

SPECIAL_TOKENS = [
    AddedToken("<|endoftext|>", special=True, normalized=False),
    AddedToken("<|pad|>", special=True, normalized=False),
    AddedToken("<|mask|>", special=True, normalized=False, lstrip=True),
]
PLAIN_ADDED_TOKENS = [
    AddedToken("[[code]]", special=False, normalized=True),
    AddedToken("    ", special=False, normalized=True),  # NeoX adds runs of spaces like this
    AddedToken("hello world", special=False, normalized=True, single_word=True),
]


def corpus():
    stdlib = sysconfig.get_paths()["stdlib"]
    texts = []
    for name in STDLIB_MODULES:
        with open(os.path.join(stdlib, name), encoding="utf-8") as f:
            texts.append(f.read())
    texts += MULTILINGUAL * 20
    return texts


def train(pre_tokenizer, vocab_size, ignore_merges=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    tok.add_tokens(PLAIN_ADDED_TOKENS)
    return tok


def code_snippets(rng):
    stdlib = sysconfig.get_paths()["stdlib"]
    with open(os.path.join(stdlib, "argparse.py"), encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    snippets = []
    for _ in range(40):
        start = rng.randrange(len(lines) - 4)
        snippets.append("".join(lines[start:start + rng.randint(1, 4)]))
    snippets += [
        "def f(x):\n    return x ** 2\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
        "if x == 1:\r\n    print('CRLF')\r\n",
        "SELECT * FROM users WHERE id = 42;",
        "<html><body class=\"main\">Hi &amp; bye</body></html>",
        "fn main() { println!(\"{}\", 1 + 2); }",
        "x = {'a': [1, 2, 3], \"b\": None}  # comment",
        "#include <stdio.h>\nint main(void){return 0;}",
    ]
    return snippets


def fixed_cases():
    cases = [
        "", " ", "  ", "a", "A", "\n", "\t", "\r\n", "hello", " hello", "hello ", "Hello, World!",
        # whitespace runs, tabs, CRLF
        "a  b", "a   b", "a    b", "a     b", "   leading", "trailing   ", "\t\tindented\tcode",
        "x\n\n\ny", "line1\r\nline2\r\n", "\r\n\r\n\r\n", "mixed \t \n \r\n end", "\n\n", " \n ",
        "tabs\t\t\tand  spaces  ", "\u00a0nbsp\u00a0", "ideographic\u3000space", "line\u2028sep",
        " " * 40, "\t" * 10 + "x", "a\r\rb", "\r\n  \r\n",
        # contractions and case
        "I'm you're they've we'll he'd it's don't", "I'M YOU'RE THEY'VE WE'LL HE'D IT'S DON'T",
        "'s 't 're 've 'm 'll 'd", "'S 'T 'RE 'VE 'M 'LL 'D", "'ſ 'K", "rock'n'roll",
        # scripts
        "你好，世界！", "我能吞下玻璃而不伤身体。", "いろはにほへと", "カタカナ", "東京都渋谷区",
        "안녕하세요", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "क्षत्रिय", "สวัสดีชาวโลก",
        "Привет, мир!", "Ελληνικά γράμματα", "ქართული", "Հայերեն", "বাংলা", "தமிழ்", "ሰላም ለዓለም",
        "Ǆǅǆ ǈǉ", "ﬁﬂ ligatures", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math", "𓀀𓀁 hieroglyphs", "mixed中文and English混合",
        "Ünïcödé ñ ç ß ø å æ", "עִבְרִית עם ניקוד",
        # emoji
        "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇯🇵🇺🇸", "1️⃣", "👩🏾‍💻 codes", "🧑‍🤝‍🧑",
        "emoji😀in😂text", "🎉🎉🎉", "✊🏿✊🏻",
        # combining marks
        "e\u0301", "cafe\u0301", "Z\u0324\u0354\u0367\u0311a\u0308l\u036eg\u0306o\u0319",
        "a\u0300\u0301\u0302\u0303", "\u0301 leading mark", "n\u0303o",
        # numbers
        "0", "42", "1234567890", "12345678901234567890", "3.14159", "1,000,000", "٣٤٥", "१२३",
        "½ ¾", "x² y³", "①②③", "Ⅻ", "0xDEADBEEF", "1e-10", "v1.2.3", "2024-01-15T10:30:00Z",
        # special and added tokens inside text
        "<|endoftext|>", "Hello<|endoftext|>World", "a<|endoftext|>b<|pad|>c", "<|pad|><|pad|>",
        "<|endoftext|><|endoftext|>", "text <|mask|> more", "x   <|mask|>y", "<|mask|>",
        "<|endoftext", "endoftext|>", "<|endof<|endoftext|>text|>", "[[code]] print(1)",
        "a[[code]]b", "say hello world!", "xhello world", "hello worlds", "hello world",
        "    four spaces", "        eight spaces", "  two", "<|pad|> <|pad|>",
        "special\n<|endoftext|>\nafter", "😀<|endoftext|>😀",
        # control characters and odd code points
        "\x00\x01\x02", "\x7f", "soft\u00adhyphen", "zero\u200bwidth", "\ufeffbom", "\ufffd",
        "\U0010ffff", "\ue000 private", "tab\x0bvertical\x0cfeed", "\u0085next line",
        # punctuation
        "!!!???...", "---", "...", "(parens) [brackets] {braces}", "\"quoted\" 'single'",
        "a.b,c;d:e", "@user #tag $100 %50 ^ & * _under_", "«guillemets» „quotes“", "‽⁉",
        # long words
        "a" * 300, "supercalifragilisticexpialidocious" * 5, "ab" * 60 + " " + "9" * 40,
        "é" * 50, "😀" * 12,
    ]
    return cases


def random_cases(rng, count):
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " \t\n\r",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "你好世界中文字符漢字かなカナ한글",
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюяαβγδεζηθ",
        "مرحبابالعالمשלוםעולםनमस्तेสวัสดี",
        "😀😂👍🏽‍❤️🇯🇵\u0301\u0308\u200d\ufe0f",
    ]
    specials = ["<|endoftext|>", "<|pad|>", "<|mask|>", "[[code]]", "    ", "hello world", "'s", "'LL"]
    cases = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.1:
                parts.append(rng.choice(specials))
            else:
                pool = rng.choice(pools)
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 8))))
        cases.append("".join(parts))
    return cases


def nfc_cases(rng):
    """Texts that NFC changes: decomposed letters, marks out of canonical order, Hangul jamo,
    singletons and composition exclusions, and random base + mark sequences."""
    cases = [
        "cafe\u0301", "café", "cafe\u0301 and café", "e\u0301\u0301", "a\u0323\u0302",
        "a\u0302\u0323", "o\u031b\u0323 Vie\u0323\u0302t Nam", "\u1100\u1161\u11a8",
        "\u1100\u1161 \u110b\u1173\u11af", "\u212b \u2126 \u212a", "\u0958 \u0929 \u2adc",
        "\u0344 \u0f73 \u0f75", "\u1e0b\u0323", "q\u0307\u0323", "\u0301leading mark",
        "x<|endoftext|>\u0301", "cafe<|pad|>\u0301", "\u00c5\u0301", "A\u030a\u0301",
        "\u0b47\u0b3e \u0dd9\u0dcf\u0dca", "\u3046\u3099 \u30cf\u309a", "s\u0323\u0307",
        "\u1ec7 e\u0323\u0302 e\u0302\u0323", "\u03b9\u0308\u0301 \u0390",
        # marks newer than HF's normalization data, which it leaves in place
        "O\u1dc9\u1dfa", "a\u0345\u0898", "\U00011935\U00011930",
    ]
    bases = "aeiouAEIOUcnszyCNSZ\u03b1\u03b9\u0435\u0438\u1100\u1161\u11a8 "
    marks = "\u0300\u0301\u0302\u0303\u0308\u030a\u0323\u0327\u0328\u031b\u0345\u0306"
    for _ in range(40):
        cases.append("".join(rng.choice(bases) + "".join(rng.choice(marks)
                                                          for _ in range(rng.randint(0, 3)))
                             for _ in range(rng.randint(1, 8))))
    return cases


def decode_cases(tok, texts):
    """Id lists that cut multi-byte characters apart, and raw id runs."""
    out = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        for cut in range(1, len(ids)):
            out.append(ids[:cut])
            out.append(ids[cut:])
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    rng = random.Random(7)
    for _ in range(20):
        out.append([rng.randrange(vocab_size) for _ in range(rng.randint(1, 10))])
    return out


def write(name, tok, texts, decode_texts, description, config_override=None,
          string_merges=False):
    """Writes name/golden.json and, unless the case set borrows gpt2's file with some top-level
    keys replaced (config_override), name/tokenizer.json."""
    directory = os.path.join(OUT_DIR, name)
    tokenizer_file = f"{'gpt2' if config_override is not None else name}/tokenizer.json"
    os.makedirs(directory, exist_ok=True)
    if config_override is None:
        config = json.loads(tok.to_str())
        if string_merges:  # the older tokenizer.json form, which HF still reads
            config["model"]["merges"] = [" ".join(pair) for pair in config["model"]["merges"]]
        with open(os.path.join(directory, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
    # Check that the file, not just the in-memory object, gives the recorded ids.
    with open(os.path.join(OUT_DIR, tokenizer_file), encoding="utf-8") as f:
        config = json.load(f)
    config.update(config_override or {})
    reloaded = Tokenizer.from_str(json.dumps(config))
    def decodings(ids):
        # decoded_skip_special is left out where it equals decoded, to keep the file small.
        entry = {"decoded": reloaded.decode(ids, skip_special_tokens=False)}
        skipped = reloaded.decode(ids, skip_special_tokens=True)
        if skipped != entry["decoded"]:
            entry["decoded_skip_special"] = skipped
        return entry

    cases = []
    for text in texts:
        ids = reloaded.encode(text, add_special_tokens=False).ids
        assert ids == tok.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids": ids, **decodings(ids)})
    dcases = [{"ids": ids, **decodings(ids)} for ids in decode_cases(reloaded, decode_texts)]
    golden = {
        "format_version": 1,
        "generator": "tools/golden/make_tokenizer_golden.py",
        "tokenizers_version": tokenizers.__version__,
        "description": description,
        "tokenizer": tokenizer_file,
        "encode_options": "add_special_tokens=False",
        "cases": cases,
        "decode_cases": dcases,
    }
    if config_override is not None:
        golden["config_override"] = config_override
    with open(os.path.join(directory, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{name}: {len(cases)} cases, {len(dcases)} decode cases")


def main():
    rng = random.Random(1234)
    texts = fixed_cases() + code_snippets(rng) + MULTILINGUAL + random_cases(rng, 70)
    decode_texts = ["😀👍🏽", "你好", "👨‍👩‍👧‍👦 é", "नमस्ते", "<|endoftext|>ß<|pad|>"]

    gpt2 = train(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), 1200)
    write("gpt2", gpt2, texts, decode_texts,
          "byte-level BPE, ByteLevel(add_prefix_space=False, use_regex=True) pre-tokenizer")

    prefix = Tokenizer.from_str(gpt2.to_str())
    prefix.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    write("prefix_space", prefix, texts[:60], decode_texts[:1],
          "the gpt2 model with ByteLevel(add_prefix_space=True)",
          config_override={"pre_tokenizer": json.loads(prefix.to_str())["pre_tokenizer"]})

    nfc = Tokenizer.from_str(gpt2.to_str())
    nfc.normalizer = normalizers.NFC()
    nfc.add_tokens([AddedToken("cafe\u0301", special=False, normalized=True)])
    nfc_config = json.loads(nfc.to_str())
    write("nfc", nfc, nfc_cases(rng) + texts[:80], decode_texts[:1],
          "the gpt2 model with an NFC normalizer and a decomposed normalized added token",
          config_override={key: nfc_config[key] for key in ("normalizer", "added_tokens")})

    llama3 = train(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ]), 1200, ignore_merges=True)
    write("llama3", llama3, texts, decode_texts,
          "Split(Llama-3 regex) + ByteLevel(use_regex=False), ignore_merges, \"a b\" merges",
          string_merges=True)


if __name__ == "__main__":
    main()
