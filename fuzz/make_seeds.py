"""Writes the seed corpus of each fuzz target under fuzz/corpus/<target>/ (small, checked in).
Run from the repository root: python3 fuzz/make_seeds.py. Needs grpcio-tools for the
GenerateRequest seeds."""

import json
import os
import shutil
import struct
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def safetensors(tensors, metadata=None):
    header, blob = {}, b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(payload)]}
        blob += payload
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + blob


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    put("safetensors_fuzz", "two_tensors", safetensors({
        "a.weight": ("F32", [2, 3], struct.pack("<6f", *range(6))),
        "b.bias": ("BF16", [4], b"\x80\x3f" * 4)}, {"format": "pt"}))
    put("safetensors_fuzz", "scalar_f16", safetensors({"s": ("F16", [], b"\x00\x3c")}))
    put("safetensors_fuzz", "empty_header", struct.pack("<Q", 2) + b"{}")

    put("model_config_fuzz", "shipped.json", open(os.path.join(ROOT, "models/xlstm-code-mtp/config.json")).read())
    put("model_config_fuzz", "golden_fused.json", open(os.path.join(ROOT, "tests/golden/models/f32_fused/config.json")).read())
    put("model_config_fuzz", "golden_caps.json", open(os.path.join(ROOT, "tests/golden/models/f32_caps_bias/config.json")).read())

    put("tokenizer_json_fuzz", "gpt2.json", open(os.path.join(ROOT, "tests/golden/tokenizer/gpt2/tokenizer.json")).read())
    put("tokenizer_json_fuzz", "llama3.json", open(os.path.join(ROOT, "tests/golden/tokenizer/llama3/tokenizer.json")).read())
    put("tokenizer_json_fuzz", "tiny.json", json.dumps({
        "version": "1.0", "added_tokens": [{"id": 5, "content": "<|end|>", "special": True, "single_word": False,
                                           "lstrip": False, "rstrip": False, "normalized": False}],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\p{L}+|\\s+|[^\\s\\p{L}]+"},
                          "behavior": "Isolated", "invert": False},
        "decoder": None,
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, " ": 3, "c": 4}, "merges": ["a b"]}}))

    for i, text in enumerate(["def fibonacci(n):\n    if n < 2:\n        return n\n", "héllo 👋 wörld\r\n\t",
                              "<|endoftext|>class A:<|endoftext|>", "    \n\n\n   x", "\u200d\u0301e\u0301"]):
        put("tokenizer_text_fuzz", f"text{i}", text)

    bodies = [
        {"model": "xlstm-code-mtp", "prompt": "def f(x):", "max_tokens": 16, "temperature": 0.7, "top_p": 0.9,
         "n": 2, "stop": ["\n\n"], "seed": 7, "logprobs": 2, "stream": True, "stream_options": {"include_usage": True}},
        {"prompt": [1, 2, 3], "max_tokens": 4294967297, "session_id": "chat-1", "user": "u", "ignore_eos": True},
        {"messages": [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "a stack"}],
         "max_completion_tokens": 8, "logprobs": True, "top_logprobs": 3, "presence_penalty": 0.5},
    ]
    for i, body in enumerate(bodies):
        put("openai_body_fuzz", f"body{i}.json", json.dumps(body))
    # Findings, kept as regression inputs.
    put("openai_body_fuzz", "max_tokens_zero.json", '{"model": "xlstm-code-mtp", "prompt": "def f(x):", '
                                                    '"max_tokens": 0, "stream_options": {"include_usage": true}}')

    put("chat_template_fuzz", "plain", "\x0f<|{role}|>\n{content}\n\x0e<|assistant|>\n\x04user\x05hello")
    put("chat_template_fuzz", "nested", "\x09{content}\x01\x03{role}\x12{content}{content}")

    with tempfile.TemporaryDirectory() as stubs:
        from grpc_tools import protoc
        if protoc.main(["protoc", f"-I{ROOT}/proto", f"--python_out={stubs}",
                        f"{ROOT}/proto/xlserve/v1/xlserve.proto"]) != 0:
            sys.exit("cannot generate Python stubs")
        sys.path.insert(0, stubs)
        from xlserve.v1 import xlserve_pb2 as pb
        requests = [
            pb.GenerateRequest(prompt="def f(x):", max_tokens=16, temperature=0.8, top_p=0.95, top_k=40, seed=3,
                               stop=["\n\n"], logprobs=2, n=2, priority=1, speculation=pb.SPECULATION_MODE_ON),
            pb.GenerateRequest(prompt_token_ids=[1, 2, 3, 4000], max_tokens=2, stop_token_ids=[0], session_id="s-1",
                               ignore_eos=True, num_draft=2, repetition_penalty=1.1, min_p=0.05),
            pb.GenerateRequest(prompt="x", model="xlstm-code-mtp", presence_penalty=-2.0, frequency_penalty=2.0),
        ]
        for i, r in enumerate(requests):
            put("generate_request_fuzz", f"request{i}.pb", r.SerializeToString())


if __name__ == "__main__":
    main()
