"""`xlserve serve` facing clients it should not trust, over loopback: undecodable messages and
log-forging session ids are clear INVALID_ARGUMENTs; with API keys every XlServe call needs one
and a session belongs to the key that opened it; TLS (and client certificates) when configured;
reflection can be switched off; the gateway authenticates itself to such a server."""

import json
import os
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

XLSERVE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "xlserve")
MODEL = "models/xlstm-code-mtp"
PROTO_DIR = "proto"

STUBS = tempfile.mkdtemp(prefix="xlserve-stubs-")
from grpc_tools import protoc  # noqa: E402

if protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={STUBS}", f"--grpc_python_out={STUBS}",
                f"{PROTO_DIR}/xlserve/v1/xlserve.proto"]) != 0:
    raise RuntimeError("cannot generate Python stubs")
sys.path.insert(0, STUBS)
from xlserve.v1 import xlserve_pb2 as pb, xlserve_pb2_grpc as pb_grpc  # noqa: E402

sys.path.insert(0, os.getcwd())  # the runfiles root: tests/testing is there
from tests.testing import xlserve_processes as processes  # noqa: E402
from tests.testing.xlserve_processes import start  # noqa: E402

processes.XLSERVE = XLSERVE


def start_server(*extra, env=None):
    proc, port, _ = processes.start_server(*extra, env=env, metrics=False)
    return proc, port


TMP = tempfile.mkdtemp(prefix="xlserve-security-")






def stop(proc):
    proc.terminate()
    return proc.wait(timeout=30)


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def last(stream):
    final = None
    for m in stream:
        final = m if m.finish_reason else final
    return final


class ServerInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server, port = start_server()
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        cls.stub = pb_grpc.XlServeStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        assert stop(cls.server) == 0

    def test_undecodable_messages_are_invalid_argument(self):
        garbage = b"\xff\xff\xff\xff"  # field 0x1fffffff... with an invalid wire type
        calls = {"Generate": self.channel.unary_stream("/xlserve.v1.XlServe/Generate"),
                 "Tokenize": self.channel.unary_unary("/xlserve.v1.XlServe/Tokenize"),
                 "Detokenize": self.channel.unary_unary("/xlserve.v1.XlServe/Detokenize"),
                 "GetModelInfo": self.channel.unary_unary("/xlserve.v1.XlServe/GetModelInfo")}
        for name, call in calls.items():
            with self.subTest(method=name):
                with self.assertRaises(grpc.RpcError) as err:
                    result = call(garbage, timeout=30)
                    list(result) if name == "Generate" else result
                self.assertEqual(err.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn("not a valid xlserve.v1.", err.exception.details())
        # Messages that decode are served as before.
        self.assertGreater(len(self.stub.Tokenize(pb.TokenizeRequest(text="def f():")).token_ids), 0)
        final = last(self.stub.Generate(pb.GenerateRequest(prompt="def f():", max_tokens=2), timeout=60))
        self.assertEqual(final.usage.completion_tokens, 2)

    def test_session_ids_with_control_characters_are_refused(self):
        for session in ("a\nINFO forged", "\x1b[2Khidden", "tab\there"):
            with self.subTest(session=session):
                with self.assertRaises(grpc.RpcError) as err:
                    list(self.stub.Generate(pb.GenerateRequest(prompt="x", max_tokens=1, session_id=session), timeout=30))
                self.assertEqual(err.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn("control characters", err.exception.details())


class ReflectionTest(unittest.TestCase):
    def test_reflection_can_be_switched_off(self):
        server, port = start_server("--reflection=false")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                refl = reflection_pb2_grpc.ServerReflectionStub(channel)
                with self.assertRaises(grpc.RpcError) as err:
                    list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
                self.assertEqual(err.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        finally:
            self.assertEqual(stop(server), 0)


class ServerAuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.key_file = write("server.keys", "# serving keys\nkey-a\n")
        env = dict(os.environ, XLSERVE_API_KEYS="key-b")
        cls.server, cls.port = start_server("--api-key-file", cls.key_file, env=env)
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{cls.port}")
        cls.stub = pb_grpc.XlServeStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        assert stop(cls.server) == 0

    def test_every_call_needs_a_key(self):
        for metadata in (None, [("authorization", "Bearer nope")], [("authorization", "key-a")]):
            with self.subTest(metadata=metadata):
                with self.assertRaises(grpc.RpcError) as err:
                    self.stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=metadata)
                self.assertEqual(err.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
                with self.assertRaises(grpc.RpcError) as err:
                    list(self.stub.Generate(pb.GenerateRequest(prompt="x", max_tokens=1), metadata=metadata))
                self.assertEqual(err.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        for key in ("key-a", "key-b"):
            info = self.stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=[("authorization", f"Bearer {key}")])
            self.assertEqual(info.vocab_size, 4096)

    def test_sessions_belong_to_the_key_that_opened_them(self):
        def turn(key, prompt):
            return last(self.stub.Generate(pb.GenerateRequest(prompt=prompt, max_tokens=4, session_id="shared"),
                                           metadata=[("authorization", f"Bearer {key}")], timeout=60))

        self.assertEqual(turn("key-a", "def fibonacci(n):").usage.cached_prompt_tokens, 0)
        self.assertGreater(turn("key-a", "\n\nprint(1)").usage.cached_prompt_tokens, 0)
        self.assertEqual(turn("key-b", "\n\nprint(1)").usage.cached_prompt_tokens, 0)

    def test_the_gateway_authenticates_itself_upstream(self):
        upstream_key = write("upstream.key", "key-b\n")
        for extra, status in ((["--upstream-api-key-file", upstream_key], 200), ([], 502)):
            with self.subTest(extra=extra):
                proc, m = start(["gateway", "--port", "0", "--upstream", f"127.0.0.1:{self.port}", *extra],
                                r"listening on [\d.]+:(\d+)")
                try:
                    req = urllib.request.Request(f"http://127.0.0.1:{m.group(1)}/v1/completions",
                                                 data=json.dumps({"prompt": "x", "max_tokens": 2}).encode(),
                                                 headers={"Content-Type": "application/json"})
                    try:
                        with urllib.request.urlopen(req, timeout=60) as r:
                            got = r.status
                    except urllib.error.HTTPError as e:
                        got = e.code
                    self.assertEqual(got, status)
                finally:
                    self.assertEqual(stop(proc), 0)


class ServerTlsTest(unittest.TestCase):
    def test_tls_and_client_certificates(self):
        def make_cert(name, cn, signer=None):
            key, crt = os.path.join(TMP, name + ".key"), os.path.join(TMP, name + ".crt")
            if signer:
                csr = os.path.join(TMP, name + ".csr")
                subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                                "-subj", f"/CN={cn}"], check=True, capture_output=True)
                subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", signer[1], "-CAkey", signer[0],
                                "-CAcreateserial", "-out", crt, "-days", "1"], check=True, capture_output=True)
            else:
                subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                                "-days", "1", "-subj", f"/CN={cn}", "-addext", "subjectAltName=IP:127.0.0.1"],
                               check=True, capture_output=True)
            return key, crt

        server_key, server_crt = make_cert("server", "127.0.0.1")
        ca_key, ca_crt = make_cert("client-ca", "client ca")
        client_key, client_crt = make_cert("client", "client", signer=(ca_key, ca_crt))

        def read(path):
            with open(path, "rb") as f:
                return f.read()

        server, port = start_server("--tls-cert", server_crt, "--tls-key", server_key, "--tls-client-ca", ca_crt)
        try:
            address = f"127.0.0.1:{port}"
            good = grpc.secure_channel(address, grpc.ssl_channel_credentials(
                read(server_crt), private_key=read(client_key), certificate_chain=read(client_crt)))
            self.assertEqual(pb_grpc.XlServeStub(good).GetModelInfo(pb.GetModelInfoRequest(), timeout=30).vocab_size, 4096)
            good.close()
            for channel in (grpc.insecure_channel(address),
                            grpc.secure_channel(address, grpc.ssl_channel_credentials(read(server_crt)))):
                with self.assertRaises(grpc.RpcError) as err:
                    pb_grpc.XlServeStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
                self.assertEqual(err.exception.code(), grpc.StatusCode.UNAVAILABLE)
                channel.close()
        finally:
            self.assertEqual(stop(server), 0)
        r = subprocess.run([XLSERVE, "serve", "--model", MODEL, "--port", "0", "--tls-cert", server_crt],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("tls_cert and tls_key go together", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
