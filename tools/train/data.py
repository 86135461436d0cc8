"""Byte-level BPE tokenizer (HF tokenizers) trained on the train split, and the tokenized corpus.

Each split becomes one uint16 token stream: every file's tokens followed by <|endoftext|> (id 0).
Streams are cached under /tmp keyed by the tokenizer and the file contents, so the trainer and the
evaluator of one GPU run tokenize once.
"""

import hashlib
import json
import multiprocessing
import os
import time

import numpy as np

import corpus

EOT = "<|endoftext|>"
EOT_ID = 0
CACHE_DIR = "/tmp/xlstm_mtp_cache"
TOKENIZER_SAMPLE_CHARS = 120_000_000  # enough text for 4096 tokens; training on all costs minutes


def train_tokenizer(docs: list[corpus.Doc], vocab_size: int) -> str:
    """GPT-2 style byte-level BPE (no normaliser, ByteLevel pre-tokenizer with the GPT-2 regex,
    ByteLevel decoder) with <|endoftext|> as id 0. Returns the tokenizer.json text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # A pseudo-random sample: files ordered by content hash.
    sample, chars = [], 0
    for d in sorted(docs, key=lambda d: d.digest):
        if chars >= TOKENIZER_SAMPLE_CHARS:
            break
        sample.append(d.text)
        chars += len(d.text)
    tok.train_from_iterator(sample, trainer, length=len(sample))
    if tok.token_to_id(EOT) != EOT_ID:
        raise RuntimeError(f"{EOT} got id {tok.token_to_id(EOT)}, expected {EOT_ID}")
    return tok.to_str()


_worker_tokenizer = None
_worker_docs = None


def _init_worker(tokenizer_json: str):
    from tokenizers import Tokenizer

    global _worker_tokenizer
    _worker_tokenizer = Tokenizer.from_str(tokenizer_json)


def _encode_range(bounds: tuple[int, int]) -> bytes:
    parts = []
    for enc in _worker_tokenizer.encode_batch([d.text for d in _worker_docs[bounds[0]:bounds[1]]]):
        parts.append(np.asarray(enc.ids, dtype=np.uint16))
        parts.append(np.array([EOT_ID], dtype=np.uint16))
    return np.concatenate(parts).tobytes() if parts else b""


def encode_docs(docs: list[corpus.Doc], tokenizer_json: str, workers: int) -> np.ndarray:
    """One uint16 stream of all docs (in order), each followed by EOT; forked workers share docs."""
    global _worker_docs
    _worker_docs = docs
    step = max(1, len(docs) // (workers * 8))
    ranges = [(i, min(i + step, len(docs))) for i in range(0, len(docs), step)]
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per forked worker
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(tokenizer_json,)) as pool:
        chunks = pool.map(_encode_range, ranges)
    _worker_docs = None
    return np.frombuffer(b"".join(chunks), dtype=np.uint16).copy()


def _cache_key(tokenizer_json: str, docs: list[corpus.Doc]) -> str:
    h = hashlib.sha1(tokenizer_json.encode())
    for d in docs:
        h.update(d.digest.encode())
    return h.hexdigest()[:16]


def tokenized(docs: list[corpus.Doc], tokenizer_json: str, workers: int | None = None) -> np.ndarray:
    workers = workers or os.cpu_count()
    os.makedirs(CACHE_DIR, exist_ok=True)
    path = os.path.join(CACHE_DIR, _cache_key(tokenizer_json, docs) + ".npy")
    if os.path.exists(path):
        return np.load(path)
    tokens = encode_docs(docs, tokenizer_json, workers)
    np.save(path + ".tmp.npy", tokens)
    os.replace(path + ".tmp.npy", path)
    return tokens


def prepare(tokenizer_path: str | None, vocab_size: int, val_packages, log=print) -> dict:
    """Reads the corpus, trains (or loads) the tokenizer and tokenizes both splits.

    Returns {"tokenizer_json", "train", "val" (uint16 arrays), "info"}."""
    t0 = time.time()
    train_docs, val_docs = corpus.load(val_packages)
    info = {"train": corpus.summary(train_docs), "val": corpus.summary(val_docs),
            "val_packages": sorted({d.package for d in val_docs})}
    log(f"corpus: {json.dumps(info)} ({time.time() - t0:.1f} s)")
    if not val_docs:
        raise RuntimeError(f"none of the validation packages {list(val_packages)} is installed")
    if tokenizer_path and os.path.exists(tokenizer_path):
        with open(tokenizer_path) as f:
            tokenizer_json = f.read()
        log(f"tokenizer: loaded {tokenizer_path}")
    else:
        t1 = time.time()
        tokenizer_json = train_tokenizer(train_docs, vocab_size)
        log(f"tokenizer: trained, vocab {vocab_size} ({time.time() - t1:.1f} s)")
    t2 = time.time()
    train = tokenized(train_docs, tokenizer_json)
    val = tokenized(val_docs, tokenizer_json)
    info["train"]["tokens"] = int(train.size)
    info["val"]["tokens"] = int(val.size)
    log(f"tokens: train {train.size:,} val {val.size:,} ({time.time() - t2:.1f} s)")
    return {"tokenizer_json": tokenizer_json, "train": train, "val": val, "info": info}


def prepare_val(tokenizer_json: str, val_packages, log=print) -> tuple[np.ndarray, dict]:
    """The validation stream alone (for evaluation), with the corpus summary."""
    _, val_docs = corpus.load(val_packages)
    if not val_docs:
        raise RuntimeError(f"none of the validation packages {list(val_packages)} is installed")
    val = tokenized(val_docs, tokenizer_json)
    info = dict(corpus.summary(val_docs), tokens=int(val.size), packages=sorted({d.package for d in val_docs}))
    log(f"validation: {json.dumps(info)}")
    return val, info
