"""Streaming token windows from plain-text and JSONL corpora, resumable exactly.

Inputs are files or directories (walked for files matching the include patterns). A `.jsonl` or
`.json` file holds one JSON object per line whose `text_key` field is a document; any other file
is one document, read in blocks of about 1 MB (cut at a newline) so that a large file never sits in
memory whole. Documents are tokenized in batches (HF tokenizers, which use every core), joined with
the EOS id between them and cut into packed windows of `window` tokens; windows pass through a
shuffle buffer, since consecutive windows come from one file. Each epoch visits the files in a
new seeded order.

The position (epoch, file, byte offset), the tokens not yet in a window, the shuffle buffer and
the random state make up `state()`, so a resumed run draws the same windows as one that never
stopped.
"""

import fnmatch
import json
import os
import random

import torch

BLOCK_BYTES = 1 << 20
TOKENIZE_BYTES = 1 << 20  # text per encode_batch call


def list_files(paths, include, exclude=()) -> list[str]:
    """Files named in `paths`, and under directories there those matching `include` (globs on
    the base name); any path component matching `exclude` is skipped. Sorted, without repeats."""
    out = set()
    for path in paths:
        if os.path.isfile(path):
            out.add(os.path.realpath(path))
            continue
        if not os.path.isdir(path):
            raise FileNotFoundError(f"corpus path {path} does not exist")
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = [d for d in dirnames if not any(fnmatch.fnmatch(d, x) for x in exclude)]
            for name in filenames:
                if any(fnmatch.fnmatch(name, g) for g in include) and not any(fnmatch.fnmatch(name, x) for x in exclude):
                    out.add(os.path.realpath(os.path.join(dirpath, name)))
    if not out:
        raise ValueError(f"no corpus files in {list(paths)} matching {list(include)}")
    return sorted(out)


def is_jsonl(path: str) -> bool:
    return path.endswith((".jsonl", ".json"))


def read_pieces(path: str, offset: int, text_key: str):
    """(text, ends_document, next_offset) from byte `offset` on."""
    with open(path, "rb") as f:
        f.seek(offset)
        if is_jsonl(path):
            for line in f:
                offset += len(line)
                line = line.strip()
                if not line:
                    continue
                try:
                    text = json.loads(line).get(text_key)
                except (ValueError, AttributeError):
                    continue  # a broken or non-object line is skipped, not fatal, in a big corpus
                if isinstance(text, str) and text:
                    yield text, True, offset
            return
        while True:
            block = f.read(BLOCK_BYTES)
            if not block:
                return
            more = f.read(1)
            if more:
                f.seek(-1, os.SEEK_CUR)
                cut = block.rfind(b"\n") + 1
                if cut > 0:
                    f.seek(cut - len(block), os.SEEK_CUR)
                    block = block[:cut]
            offset += len(block)
            yield block.decode("utf-8", errors="replace"), not more, offset


class TokenStream:
    def __init__(self, files: list[str], tokenizer, eos_id: int, window: int, text_key: str = "text",
                 seed: int = 0, shuffle_buffer: int = 1024, loop: bool = True):
        self.files, self.tok, self.eos, self.window = files, tokenizer, eos_id, window
        self.text_key, self.seed, self.shuffle_buffer, self.loop = text_key, seed, shuffle_buffer, loop
        self.epoch, self.file_index, self.offset = 0, 0, 0
        self.pending: list[int] = []
        self.buffer: list[list[int]] = []
        self.rng = random.Random(seed)
        self.exhausted = False

    def _order(self) -> list[int]:
        order = list(range(len(self.files)))
        random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return order

    def _fill(self) -> bool:
        """Tokenizes about TOKENIZE_BYTES more text into windows; False at the end of the data."""
        texts, ends, size, wraps = [], [], 0, 0
        while size < TOKENIZE_BYTES:
            if self.file_index >= len(self.files):
                wraps += 1
                if not self.loop or (wraps > 1 and not texts):  # no text in a whole epoch
                    break
                self.epoch, self.file_index, self.offset = self.epoch + 1, 0, 0
            path = self.files[self._order()[self.file_index]]
            for text, ends_doc, next_offset in read_pieces(path, self.offset, self.text_key):
                texts.append(text)
                ends.append(ends_doc)
                size += len(text)
                self.offset = next_offset
                if size >= TOKENIZE_BYTES:
                    break
            else:
                self.file_index, self.offset = self.file_index + 1, 0
        if not texts:
            return False
        for enc, end in zip(self.tok.encode_batch(texts, add_special_tokens=False), ends):
            self.pending.extend(enc.ids)
            if end:
                self.pending.append(self.eos)
        whole = len(self.pending) // self.window * self.window
        self.buffer.extend(self.pending[s:s + self.window] for s in range(0, whole, self.window))
        del self.pending[:whole]
        return True

    def next_window(self) -> list[int] | None:
        while len(self.buffer) < max(1, self.shuffle_buffer) and not self.exhausted:
            if not self._fill():
                self.exhausted = True
        if not self.buffer:
            return None
        # A random one of the oldest shuffle_buffer windows: 1 keeps the text's order.
        return self.buffer.pop(self.rng.randrange(min(len(self.buffer), max(1, self.shuffle_buffer))))

    def batch(self, size: int) -> torch.Tensor | None:
        """(size, window) int64 token ids, or None when a non-looping stream has run out."""
        rows = []
        for _ in range(size):
            w = self.next_window()
            if w is None:
                break
            rows.append(w)
        return torch.tensor(rows, dtype=torch.long) if len(rows) == size else None

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """JSON-able position and the tensors of tokens in flight."""
        position = {"epoch": self.epoch, "file_index": self.file_index, "offset": self.offset,
                    "files": len(self.files), "exhausted": self.exhausted, "rng": _jsonable(self.rng.getstate())}
        tensors = {"pending": torch.tensor(self.pending, dtype=torch.int32),
                   "buffer": torch.tensor(self.buffer, dtype=torch.int32).reshape(-1, self.window)}
        return position, tensors

    def restore(self, position: dict, tensors: dict[str, torch.Tensor]) -> None:
        if position["files"] != len(self.files):
            raise ValueError(f"the corpus had {position['files']} files at the checkpoint, now {len(self.files)}")
        if tensors["buffer"].shape[1:] != (self.window,):
            raise ValueError("the checkpoint's windows have another length (--seq or --num-heads changed)")
        self.epoch, self.file_index, self.offset = position["epoch"], position["file_index"], position["offset"]
        self.exhausted = position["exhausted"]
        self.rng.setstate(_tupled(position["rng"]))
        self.pending = tensors["pending"].tolist()
        self.buffer = tensors["buffer"].tolist()


def _jsonable(x):
    return [_jsonable(v) for v in x] if isinstance(x, tuple) else x


def _tupled(x):
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x
