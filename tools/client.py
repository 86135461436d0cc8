"""A minimal Python client of xlserve's gRPC API: streams one completion to stdout.

    python3 tools/client.py "def fibonacci(n):" --max-tokens 64 [--addr 127.0.0.1:50051]

Generates the Python stubs from proto/xlserve/v1/xlserve.proto on the fly (grpcio-tools)."""

import argparse
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_stubs():
    out = tempfile.mkdtemp(prefix="xlserve-stubs-")
    proto_dir = os.path.join(ROOT, "proto")
    if protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
                    os.path.join(proto_dir, "xlserve/v1/xlserve.proto")]) != 0:
        sys.exit("cannot generate stubs from proto/xlserve/v1/xlserve.proto")
    sys.path.insert(0, out)
    from xlserve.v1 import xlserve_pb2, xlserve_pb2_grpc
    return xlserve_pb2, xlserve_pb2_grpc


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt")
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--session-id", default="")
    args = parser.parse_args()
    pb, pb_grpc = load_stubs()
    stub = pb_grpc.XlServeStub(grpc.insecure_channel(args.addr))
    request = pb.GenerateRequest(prompt=args.prompt, max_tokens=args.max_tokens, temperature=args.temperature,
                                 session_id=args.session_id)
    try:
        for msg in stub.Generate(request, timeout=300):
            sys.stdout.write(msg.text)
            sys.stdout.flush()
            if msg.finish_reason:
                u = msg.usage
                print(f"\n[{msg.finish_reason}] {u.completion_tokens} tokens in {u.decode_steps} steps "
                      f"({u.accepted_drafts} drafts accepted), {u.cached_prompt_tokens} prompt tokens cached",
                      file=sys.stderr)
    except grpc.RpcError as err:
        sys.exit(f"error: {err.code().name}: {err.details()}")


if __name__ == "__main__":
    main()
