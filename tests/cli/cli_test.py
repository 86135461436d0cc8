"""End-to-end checks of the `xlserve` binary: golden outputs through the CLI, --help on every
command, and bad input ending with exit code 1 and exactly one line on stderr."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

XLSERVE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "xlserve")
GOLDEN = "tests/golden/models"
TOKENIZER = "tests/golden/tokenizer/gpt2/tokenizer.json"


def run(*args):
    return subprocess.run([XLSERVE, *args], capture_output=True, text=True, timeout=120)


class GenerateMatchesGolden(unittest.TestCase):
    def test_every_golden_case_through_the_cli(self):
        cases = sorted(os.listdir(GOLDEN))
        self.assertGreaterEqual(len(cases), 8)
        for case in cases:
            with open(os.path.join(GOLDEN, case, "golden.json")) as f:
                golden = json.load(f)
            tol = 1e-3 if golden["weights_dtype"] == "bfloat16" else 1e-4
            for prompt in golden["prompts"]:
                ids = ",".join(map(str, prompt["prompt_ids"]))
                r = run("generate", "--model", os.path.join(GOLDEN, case), "--prompt-ids", ids,
                        "--max-tokens", str(len(prompt["greedy_tokens"])), "--ignore-eos", "--print-json")
                self.assertEqual(r.returncode, 0, r.stderr)
                out = json.loads(r.stdout)
                self.assertEqual(out["prompt_ids"], prompt["prompt_ids"])
                self.assertEqual(out["tokens"], prompt["greedy_tokens"], case)
                diff = max(abs(a - b) for a, b in zip(out["prompt_last_logits"], prompt["last_logits"]))
                self.assertEqual(len(out["prompt_last_logits"]), len(prompt["last_logits"]))
                self.assertLessEqual(diff, tol, case)

    def test_sampling_is_seeded(self):
        model = os.path.join(GOLDEN, "f32_base")
        args = ["generate", "--model", model, "--prompt-ids", "5,6,7", "--max-tokens", "16",
                "--temperature", "1.0", "--top-p", "0.9", "--print-json", "--ignore-eos"]
        a = json.loads(run(*args, "--seed", "11").stdout)["tokens"]
        b = json.loads(run(*args, "--seed", "11").stdout)["tokens"]
        c = json.loads(run(*args, "--seed", "12").stdout)["tokens"]
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

class TensorParallel(unittest.TestCase):
    """`--tensor-parallel N` splits the model over N ranks (threads on the CPU backend) and
    computes the bits of one rank: the same tokens and the same last logits, exactly."""

    def generate(self, model, ranks, *extra):
        r = run("generate", "--model", model, "--prompt-ids", "5,6,7,8,9,10,11", "--max-tokens", "12",
                "--ignore-eos", "--print-json", "--device", "cpu", "--tensor-parallel", str(ranks), *extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_split_generates_the_bits_of_one_rank(self):
        for name, counts in (("f32_heads4_wide", (2, 4)), ("f32_caps_bias", (2,))):
            model = os.path.join(GOLDEN, name)
            one = self.generate(model, 1)
            for ranks in counts:
                split = self.generate(model, ranks)
                self.assertEqual(split["tokens"], one["tokens"], (model, ranks))
                self.assertEqual(split["prompt_last_logits"], one["prompt_last_logits"], (model, ranks))

    def test_speculative_decoding_on_a_split_shipped_model(self):
        one = self.generate("models/xlstm-code-mtp", 1, "--speculation", "on")
        self.assertEqual(self.generate("models/xlstm-code-mtp", 2, "--speculation", "on")["tokens"], one["tokens"])


class Help(unittest.TestCase):
    def test_help_everywhere(self):
        for cmd in ([], ["generate"], ["tokenize"], ["detokenize"]):
            r = run(*cmd, "--help")
            self.assertEqual(r.returncode, 0, cmd)
            self.assertIn("usage:", r.stdout)


class BadInput(unittest.TestCase):
    def assert_clean_error(self, r, fragment):
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(fragment, lines[0])

    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def model_copy(self, case="f32_base"):
        dst = os.path.join(self.tmp, case)
        shutil.copytree(os.path.join(GOLDEN, case), dst)
        return dst

    def test_missing_model(self):
        self.assert_clean_error(run("generate", "--model", "/nonexistent", "--prompt-ids", "1"), "config.json")

    def test_id_outside_vocab(self):
        self.assert_clean_error(
            run("generate", "--model", os.path.join(GOLDEN, "f32_base"), "--prompt-ids", "1,256"), "256")

    def test_bad_json_config(self):
        d = self.model_copy()
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write("{ not json")
        self.assert_clean_error(run("generate", "--model", d, "--prompt-ids", "1"), "config.json")

    def test_unknown_key_value(self):
        d = self.model_copy()
        path = os.path.join(d, "config.json")
        with open(path) as f:
            cfg = json.load(f)
        cfg["weight_mode"] = "sideways"
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.assert_clean_error(run("generate", "--model", d, "--prompt-ids", "1"), "weight_mode")

    def test_wrong_shape(self):
        d = self.model_copy()
        path = os.path.join(d, "config.json")
        with open(path) as f:
            cfg = json.load(f)
        cfg["hidden_size"] = cfg["hidden_size"] * 2
        cfg.pop("embedding_dim", None)
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.assert_clean_error(run("generate", "--model", d, "--prompt-ids", "1"), "shape")

    def test_truncated_weights(self):
        d = self.model_copy()
        path = os.path.join(d, "model.safetensors")
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size // 2)
        self.assert_clean_error(run("generate", "--model", d, "--prompt-ids", "1"), "model.safetensors")

    def test_garbage_weights(self):
        d = self.model_copy()
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(os.urandom(4096))
        self.assert_clean_error(run("generate", "--model", d, "--prompt-ids", "1"), "model.safetensors")

    def test_missing_shard(self):
        d = self.model_copy("f32_sharded")
        os.remove(os.path.join(d, "model-00002-of-00003.safetensors"))
        self.assert_clean_error(run("generate", "--model", d, "--prompt-ids", "1"), "model-00002-of-00003")

    def test_bad_flags(self):
        model = os.path.join(GOLDEN, "f32_base")
        self.assert_clean_error(run("generate", "--model", model), "--prompt")
        self.assert_clean_error(run("generate", "--model", model, "--prompt-ids", "1,x"), "x")
        self.assert_clean_error(run("generate", "--model", model, "--prompt-ids", "1", "--bogus"), "--bogus")
        self.assert_clean_error(
            run("generate", "--model", model, "--prompt-ids", "1", "--temperature", "-1"), "temperature")
        self.assert_clean_error(run("generate", "--model", model, "--prompt-ids", "1", "--top-p", "0"), "top_p")
        self.assert_clean_error(
            run("generate", "--model", model, "--prompt-ids", "1", "--max-tokens", "-3"), "--max-tokens")
        self.assert_clean_error(run("generate", "--model", model, "--prompt-ids", "1", "--device", "tpu"), "tpu")

    def test_tensor_parallel_rank_counts_the_model_cannot_take(self):
        model = os.path.join(GOLDEN, "f32_base")  # 2 heads
        self.assert_clean_error(run("generate", "--model", model, "--prompt-ids", "1", "--device", "cpu",
                                    "--tensor-parallel", "4"), "splits over 1, 2")
        self.assert_clean_error(run("generate", "--model", model, "--prompt-ids", "1", "--device", "cuda",
                                    "--tensor-parallel", "2"), "CPU backend only")
        self.assert_clean_error(run("generate", "--model", model, "--prompt-ids", "1", "--tensor-parallel", "0"),
                                "tensor")

    def test_tokenizer_errors(self):
        self.assert_clean_error(run("tokenize", "--tokenizer", "/nonexistent.json", "--text", "a"), "nonexistent")
        bad = os.path.join(self.tmp, "bad.json")
        with open(bad, "w") as f:
            f.write("[1, 2")
        self.assert_clean_error(run("tokenize", "--tokenizer", bad, "--text", "a"), "bad.json")
        self.assert_clean_error(run("detokenize", "--tokenizer", TOKENIZER, "--ids", "99999999"), "99999999")
        self.assert_clean_error(run("tokenize", "--tokenizer", TOKENIZER), "--text")


class Tokenize(unittest.TestCase):
    def test_round_trip(self):
        text = "def f(x):\r\n    return x  # héllo 👋🏽 世界"
        r = run("tokenize", "--tokenizer", TOKENIZER, "--text", text, "--print-json")
        self.assertEqual(r.returncode, 0, r.stderr)
        ids = json.loads(r.stdout)["ids"]
        self.assertGreater(len(ids), 5)
        r = run("detokenize", "--tokenizer", TOKENIZER, "--ids", ",".join(map(str, ids)), "--print-json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["text"], text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
