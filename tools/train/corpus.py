"""The Python source files of this machine (standard library and installed packages), split into
train and validation by package so that validation code is never seen in training.

A package is a top-level module: the first path component under a site-packages (or
dist-packages) directory, or under the standard library directory (named "stdlib/<module>").
Files are deduplicated by content; a file whose content also occurs in a validation package
is dropped from training.
"""

import concurrent.futures
import dataclasses
import hashlib
import os
import site
import sys
import sysconfig

# Installed on the GPU machine (see .library KINDS.md), not vendored inside other packages
# (pip, setuptools and torch vendor rich, pygments, urllib3, packaging, ...), about 5% of the code.
DEFAULT_VAL_PACKAGES = ("networkx", "seaborn", "statsmodels", "xarray")
MAX_FILE_BYTES = 1_000_000  # larger .py files are generated tables, not code anyone writes


@dataclasses.dataclass
class Doc:
    package: str
    path: str
    digest: str
    text: str


def _site_dirs() -> list[str]:
    dirs = set(site.getsitepackages())
    paths = sysconfig.get_paths()
    dirs.update([paths["purelib"], paths["platlib"]])
    dirs.update(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages"))
    return sorted(d for d in map(os.path.realpath, dirs) if os.path.isdir(d))


def _roots() -> list[tuple[str, str]]:
    """(prefix, directory) pairs: "stdlib/" for the standard library, "" for package dirs."""
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    return [("stdlib/", stdlib)] + [("", d) for d in _site_dirs() if d != stdlib]


def list_files() -> list[tuple[str, str]]:
    """(package, path) of every .py file under the roots, in a fixed order."""
    out = []
    seen_paths = set()
    for prefix, root in _roots():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames
                                 if d not in ("__pycache__", "site-packages", "dist-packages"))
            rel = os.path.relpath(dirpath, root)
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                real = os.path.realpath(path)
                if real in seen_paths:
                    continue
                seen_paths.add(real)
                top = name[:-3] if rel == "." else rel.split(os.sep)[0]
                out.append((prefix + top, path))
    return out


def read_source(path: str) -> tuple[str, str] | None:
    """(sha1 of the bytes, text) of a file of at most MAX_FILE_BYTES that is valid UTF-8, else None."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if not data.strip() or len(data) > MAX_FILE_BYTES:
            return None
        return hashlib.sha1(data).hexdigest(), data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def load(val_packages=DEFAULT_VAL_PACKAGES, workers: int = 32) -> tuple[list[Doc], list[Doc]]:
    """(train, val) documents, each list in a fixed order, without duplicate contents."""
    files = list_files()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        contents = list(pool.map(read_source, (p for _, p in files), chunksize=64))
    val_set = set(val_packages)
    train, val, seen = [], [], set()
    # Validation first, so that a file shared with a training package stays on the validation side.
    for want_val in (True, False):
        for (package, path), got in zip(files, contents):
            if got is None or (package in val_set) != want_val or got[0] in seen:
                continue
            seen.add(got[0])
            (val if want_val else train).append(Doc(package, path, got[0], got[1]))
    return train, val


def summary(docs: list[Doc]) -> dict:
    packages = {}
    for d in docs:
        packages[d.package] = packages.get(d.package, 0) + len(d.text)
    return {"files": len(docs), "chars": sum(packages.values()), "packages": len(packages)}
