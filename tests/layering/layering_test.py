"""The layering of the source tree, checked on every CI run (README "Layout"):

- engine/ knows nothing of kernels/, runtime/, the server, the gateway, gRPC or CUDA;
- only runtime/ (backend construction) and the GPU tests depend on kernels/;
- server/, cli/ and bench/ reach CUDA only through the engine's interfaces (engine/backend.h,
  engine/accelerator.h), never through kernels/ headers or a cast to a CUDA type;
- the gateway and loadtest/ (a client) know nothing of the engine; kernels/ nothing of what
  sits above it;
- bench/ and loadtest/ are product code that only cli/ links, and no product code depends on
  tools/ (scripts and generators that are not part of the binary);
- base/ (absl::Status helpers), settings/ (the settings tables every command uses) and net/ (serving plumbing shared by the
  server and the gateway) are leaves: they depend on nothing of xlserve above them.

Both kinds of edge are read from the files themselves: Bazel labels in BUILD.bazel (deps,
srcs, data) and #include lines in C++/CUDA sources. The test runs outside Bazel's cache (tag
"external") because it reads the whole tree, which it cannot declare as inputs.
"""

import os
import re
import sys
import tempfile
import unittest

CUDA_HEADER = r"(cuda[a-z_]*|cublas[A-Za-z_]*|cufft\w*|curand\w*|nvml|nvrtc|cooperative_groups)(\.h|\.hpp|/)"

# package prefix -> (forbidden label prefixes, forbidden include patterns)
RULES = {
    "engine/": (
        ["//kernels", "//runtime", "//server", "//gateway", "//cli", "//bench", "//loadtest", "//tools", "//proto",
         "@cuda", "//third_party:cuda", "//third_party:grpc", "//third_party:httplib"],
        [r"kernels/", r"runtime/", r"server/", r"gateway/", r"cli/", r"bench/", r"loadtest/", r"tools/", r"proto/",
         r"grpcpp/", r"httplib\.h", CUDA_HEADER],
    ),
    "server/": (
        ["//kernels", "//runtime", "//cli", "//gateway", "//bench", "//loadtest", "//tools", "@cuda",
         "//third_party:cuda"],
        [r"kernels/", r"runtime/", r"cli/", r"gateway/", r"bench/", r"loadtest/", r"tools/", CUDA_HEADER],
    ),
    "gateway/": (
        ["//engine", "//kernels", "//runtime", "//server", "//cli", "//bench", "//loadtest", "//tools", "@cuda",
         "//third_party:cuda"],
        [r"engine/", r"kernels/", r"runtime/", r"server/", r"cli/", r"bench/", r"loadtest/", r"tools/",
         CUDA_HEADER],
    ),
    "cli/": (["//kernels", "//tools", "@cuda", "//third_party:cuda"], [r"kernels/", r"tools/", CUDA_HEADER]),
    "bench/": (
        ["//kernels", "//runtime", "//server", "//gateway", "//cli", "//loadtest", "//tools", "@cuda",
         "//third_party:cuda"],
        [r"kernels/", r"runtime/", r"server/", r"gateway/", r"cli/", r"loadtest/", r"tools/", CUDA_HEADER],
    ),
    "loadtest/": (
        ["//engine", "//kernels", "//runtime", "//server", "//gateway", "//cli", "//bench", "//tools", "@cuda",
         "//third_party:cuda"],
        [r"engine/", r"kernels/", r"runtime/", r"server/", r"gateway/", r"cli/", r"bench/", r"tools/",
         CUDA_HEADER],
    ),
    "tools/": (["//kernels", "@cuda", "//third_party:cuda"], [r"kernels/", CUDA_HEADER]),
    "base/": (
        ["//engine", "//kernels", "//runtime", "//server", "//gateway", "//net", "//settings", "//cli", "//bench",
         "//loadtest", "//tools", "//proto", "@cuda", "//third_party:cuda", "//third_party:grpc",
         "//third_party:httplib"],
        [r"engine/", r"kernels/", r"runtime/", r"server/", r"gateway/", r"net/", r"settings/", r"cli/", r"bench/",
         r"loadtest/", r"tools/", r"proto/", r"grpcpp/", r"httplib\.h", CUDA_HEADER],
    ),
    "settings/": (
        ["//engine", "//kernels", "//runtime", "//server", "//gateway", "//net", "//cli", "//bench", "//loadtest",
         "//tools", "//proto", "@cuda", "//third_party:cuda", "//third_party:grpc", "//third_party:httplib"],
        [r"engine/", r"kernels/", r"runtime/", r"server/", r"gateway/", r"net/", r"cli/", r"bench/", r"loadtest/",
         r"tools/", r"proto/", r"grpcpp/", r"httplib\.h", CUDA_HEADER],
    ),
    "net/": (
        ["//engine", "//kernels", "//runtime", "//server", "//gateway", "//cli", "//bench", "//loadtest", "//tools",
         "@cuda", "//third_party:cuda"],
        [r"engine/", r"kernels/", r"runtime/", r"server/", r"gateway/", r"cli/", r"bench/", r"loadtest/", r"tools/",
         CUDA_HEADER],
    ),
    "runtime/": (
        ["//server", "//gateway", "//cli", "//bench", "//loadtest", "//tools"],
        [r"server/", r"gateway/", r"cli/", r"bench/", r"loadtest/", r"tools/"],
    ),
    "kernels/": (
        ["//runtime", "//server", "//gateway", "//cli", "//bench", "//loadtest", "//tools"],
        [r"runtime/", r"server/", r"gateway/", r"cli/", r"bench/", r"loadtest/", r"tools/"],
    ),
}
# Outside these, kernels/ is reachable only from runtime/ and the GPU tests.
MAY_USE_KERNELS = ("kernels/", "runtime/", "tests/gpu/")

LABEL = re.compile(r'"((?://|@)[^"]*)"')
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
CUDA_CAST = re.compile(r"dynamic_cast\s*<\s*(?:const\s+)?(?:\w+::)*Cuda\w*")
SOURCE_EXT = (".cc", ".h", ".cu", ".cuh", ".cpp", ".hpp")
SKIP_DIRS = {".git", ".venv", "dist", "third_party"}


def package_of(path):
    return path.replace(os.sep, "/")


def label_violations(rel, text):
    rel = package_of(rel)
    found = []
    # Comments in BUILD files may name any label; only code counts.
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    labels = LABEL.findall(code)
    for prefix, (forbidden, _) in RULES.items():
        if rel.startswith(prefix):
            found += [f"{rel}: depends on {l}" for l in labels if any(l == f or l.startswith(f + ":") or
                                                                      l.startswith(f + "/") for f in forbidden)]
    if not rel.startswith(MAY_USE_KERNELS):
        found += [f"{rel}: depends on {l} (only runtime/ may)" for l in labels
                  if l == "//kernels" or l.startswith(("//kernels:", "//kernels/"))]
    return sorted(set(found))


def source_violations(rel, text):
    rel = package_of(rel)
    found = []
    includes = INCLUDE.findall(text)
    for prefix, (_, patterns) in RULES.items():
        if rel.startswith(prefix):
            found += [f"{rel}: includes {inc}" for inc in includes for p in patterns if re.match(p, inc)]
    if not rel.startswith(MAY_USE_KERNELS):
        found += [f"{rel}: includes {inc} (only runtime/ may)" for inc in includes if inc.startswith("kernels/")]
        found += [f"{rel}: {m} (a CUDA type outside kernels/ and runtime/)" for m in CUDA_CAST.findall(text)]
    return sorted(set(found))


def check_tree(root):
    violations = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith("bazel-")]
        for name in filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if name in ("BUILD.bazel", "BUILD"):
                violations += label_violations(rel, open(path, encoding="utf-8").read())
            elif name.endswith(SOURCE_EXT):
                violations += source_violations(rel, open(path, encoding="utf-8", errors="replace").read())
    return violations


WORKSPACE_FILE = sys.argv.pop(1) if len(sys.argv) > 1 else "WORKSPACE"


def workspace_root():
    # Bazel hands over the WORKSPACE file as a runfile, a symlink into the source tree.
    root = os.path.dirname(os.path.realpath(WORKSPACE_FILE))
    if not os.path.isdir(os.path.join(root, "engine")):
        raise RuntimeError(f"{WORKSPACE_FILE} does not lead to the source tree")
    return root


class Layering(unittest.TestCase):
    def test_the_tree_keeps_its_layers(self):
        violations = check_tree(workspace_root())
        self.assertEqual(violations, [], "forbidden edges:\n  " + "\n  ".join(violations))

    def test_the_tree_was_really_read(self):
        # A wrong root would find no files and no violations: make sure the real edges were seen.
        root = workspace_root()
        self.assertIn("//kernels:cuda", open(os.path.join(root, "runtime", "BUILD.bazel")).read())
        self.assertIn('#include "kernels/cuda_backend.h"',
                      open(os.path.join(root, "runtime", "cuda_accelerator.cc")).read())

    def test_each_forbidden_edge_is_caught(self):
        # The edges issue 21 found (and their relatives) planted in a scratch tree.
        planted = {
            "engine/BUILD.bazel": 'cc_library(name = "f", deps = ["//kernels:cuda", "//engine/model"])',
            "engine/backend_factory.cc": '#include "kernels/cuda_backend.h"\n#include "engine/backend.h"\n',
            "engine/x.cc": "#include <cuda_runtime_api.h>\n",
            "cli/bench_command.cc": '#include "kernels/cuda_backend.h"\n',
            "cli/BUILD.bazel": 'cc_library(name = "c", deps = ["//kernels:cuda", "//runtime:backend_factory"])',
            "bench/shape_bench.cc": "auto* c = dynamic_cast<kernels::CudaBackend*>(b);\n",
            "bench/BUILD.bazel": 'cc_library(name = "b", deps = ["//kernels:cuda"])',
            "server/BUILD.bazel": 'cc_library(name = "s", deps = ["@cuda//:cudart"])',
            "server/s.cc": '#include "runtime/backend_factory.h"\n',
            "gateway/g.cc": '#include "engine/backend.h"\n',
            "cli/BUILD": 'cc_library(name = "l", deps = ["//tools/loadtest"])',
            "cli/loadtest_command.cc": '#include "tools/loadtest/loadtest.h"\n',
            "loadtest/BUILD.bazel": 'cc_library(name = "l", deps = ["//engine/tokenizer"])',
            "loadtest/workload.cc": '#include "server/request.h"\n',
            "bench/speculative_bench.cc": '#include "runtime/backend_factory.h"\n',
            "server/metrics.cc": '#include "loadtest/stats.h"\n',
            "settings/setting.h": '#include "engine/device.h"\n',
            "base/status_macros.h": '#include "engine/util/dtype.h"\n',
            "settings/BUILD.bazel": 'cc_library(name = "s", deps = ["//net:api_keys"])',
            "net/prometheus_text.cc": '#include "server/metrics.h"\n',
            "kernels/k.cc": '#include "server/server.h"\n',
            "tests/engine/BUILD.bazel": 'cc_test(name = "t", deps = ["//kernels:cuda"])',
        }
        allowed = {
            "runtime/BUILD.bazel": 'cc_library(name = "r", deps = ["//kernels:cuda"])  # "//server"',
            "runtime/cuda_accelerator.cc": '#include "kernels/cuda_backend.h"\n',
            "tests/gpu/BUILD.bazel": 'cc_test(name = "g", deps = ["//kernels:cuda"])',
            "cli/main.cc": '#include "runtime/accelerators.h"\n#include "engine/accelerator.h"\n',
            "cli/run_bench.cc": '#include "bench/shape_bench.h"\n#include "runtime/accelerators.h"\n',
            "bench/BUILD": 'cc_library(name = "b", deps = ["//engine:accelerator"])',
            "loadtest/BUILD": 'cc_library(name = "l", deps = ["//proto:xlserve_cc_grpc", "//settings"])',
            "gateway/BUILD.bazel": 'cc_library(name = "g", deps = ["//settings", "//net:prometheus_text"])',
        }
        with tempfile.TemporaryDirectory() as root:
            for rel, text in {**planted, **allowed}.items():
                os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
                with open(os.path.join(root, rel), "w") as f:
                    f.write(text)
            found = check_tree(root)
        for rel in planted:
            self.assertTrue(any(v.startswith(rel + ":") for v in found), f"{rel} not caught; found {found}")
        for rel in allowed:
            self.assertFalse(any(v.startswith(rel + ":") for v in found), f"{rel} wrongly caught: {found}")


if __name__ == "__main__":
    unittest.main()
