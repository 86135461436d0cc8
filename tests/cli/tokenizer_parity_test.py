"""`xlserve tokenize` against Hugging Face `tokenizers` on tokenizers this test trains itself.

The golden files pin a few tokenizers; this test makes new ones at every run (GPT-2 style
ByteLevel regex, with and without a prefix space, NeoX/Llama-3 style Split + ByteLevel, with
special and added tokens) over random text, so agreement is shown for byte-level BPE
tokenizers in general rather than for the committed files only."""

import json
import os
import random
import subprocess
import sys
import tempfile
import unittest

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

XLSERVE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "xlserve")

ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789",
    "äöüßéèêçñ", "абвгдежзийклмнопрстуфхцчшщыэюя", "αβγδεζηθικλμνξοπρστυφχψω",
    "日本語中文字漢字", "한국어글자", "अआइईउऊकखगघ", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي", "กขคงจฉชซ",
    "👋🏽😀🎉❤️👨‍👩‍👧", " \t\n\r\n    ", "()[]{}<>=+-*/%&|^~!?.,;:'\"#@$\\_`",
]
CODE = [
    "def f(x):\n    return x * 2\n", "for i in range(10):\r\n\tprint(i)\n", "class A(B):\n    pass\n",
    "if a == b and c != d:\n        raise ValueError('bad')\n", "x = [1, 2, 3]  # list\n",
    "import os, sys\n\n\n", "    \n        \n", "s = \"héllo wörld\"\n",
]


def random_text(rng, n):
    parts = []
    for _ in range(n):
        if rng.random() < 0.3:
            parts.append(rng.choice(CODE))
        else:
            alphabet = rng.choice(ALPHABETS)
            parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))))
            parts.append(rng.choice([" ", "  ", "", "\n", "\t", " ", " "]))
    return "".join(parts)


LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def train(kind, vocab_size, seed):
    rng = random.Random(seed)
    corpus = [random_text(rng, 40) for _ in range(400)]
    tok = Tokenizer(models.BPE())
    if kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    elif kind == "prefix_space":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens(["<tool>"])
    return tok


class Parity(unittest.TestCase):
    def check(self, kind, vocab_size, seed):
        tok = train(kind, vocab_size, seed)
        rng = random.Random(seed + 1)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "tokenizer.json")
            tok.save(path)
            texts = [random_text(rng, rng.randint(1, 8)) for _ in range(60)]
            texts += ["<|endoftext|>" + texts[0] + "<tool>x<|pad|>", "", " ", "\r\n\r\n", "a" * 300]
            for i, text in enumerate(texts):
                text_path = os.path.join(tmp, f"t{i}.txt")
                with open(text_path, "w", encoding="utf-8", newline="") as f:
                    f.write(text)
                r = subprocess.run([XLSERVE, "tokenize", "--tokenizer", path, "--text-file", text_path, "--print-json"],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                expected = tok.encode(text, add_special_tokens=False).ids
                self.assertEqual(json.loads(r.stdout)["ids"], expected, f"{kind} text {text!r}")

    def test_gpt2_byte_level(self):
        self.check("gpt2", 600, 1)

    def test_prefix_space(self):
        self.check("prefix_space", 900, 2)

    def test_llama3_split(self):
        self.check("llama3", 1200, 3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
