"""`xlserve bench` with acceptance traces on the CPU: --record-acceptance writes a trace from the
shipped model, and --shape model --acceptance replays it through the real decoder on random
heads (the code path of --shape 7b on a GPU)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

XLSERVE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "xlserve")
TRACE = "tests/engine/testdata/xlstm_code_mtp_acceptance.json"


def run(*args):
    return subprocess.run([XLSERVE, "bench", *args, "--device", "cpu", "--threads", "1"],
                          capture_output=True, text=True, timeout=300)


class AcceptanceTraces(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def test_record_writes_a_trace_of_the_on_runs(self):
        prompts = os.path.join(self.dir, "prompts")
        os.mkdir(prompts)
        shutil.copy(__file__, prompts)  # code the model never saw
        path = os.path.join(self.dir, "trace.json")
        r = run("--speculative", "--prompts-from", prompts, "--prompt-tokens", "32", "--new-tokens", "24",
                "--batch-sizes", "1", "--sequences", "1", "--record-acceptance", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(path) as f:
            trace = json.load(f)
        self.assertEqual(trace["num_draft"], 3)
        self.assertEqual(trace["model"], "models/xlstm-code-mtp")
        self.assertEqual(len(trace["verifies"]["3"]), 4)
        self.assertGreater(sum(trace["verifies"]["3"]), 0)
        self.assertEqual(len(trace["conditional_acceptance"]), 3)

    def test_replay_on_random_heads_keeps_the_traced_drafts(self):
        out = os.path.join(self.dir, "out.json")
        r = run("--shape", "model", "--speculative", "--acceptance", TRACE, "--batch-sizes", "1,2",
                "--sequences", "3", "--prompt-tokens", "16", "--new-tokens", "24", "--json", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        header = r.stdout.splitlines()[0]
        self.assertIn("system cost with replayed acceptance (%s), not output quality" % TRACE, header)
        with open(out) as f:
            rows = json.load(f)["rows"]
        self.assertEqual([(row["batch"], row["mode"]) for row in rows],
                         [(b, m) for b in (1, 2) for m in ("off", "on", "auto")])
        for row in rows:
            # At least 3 sequences, in whole rounds of the batch: 3 of 1, 2 of 2.
            self.assertEqual(row["sequences"], {1: 3, 2: 4}[row["batch"]])
            self.assertEqual(row["tokens"], row["sequences"] * 23)
            # Passes are split by whether a sequence drafted in them: never with speculation off,
            # every pass but the last one-token step of each round with it on.
            self.assertLessEqual(row["drafting_seconds"] + row["plain_seconds"], row["decode_seconds"])
            if row["mode"] == "off":
                self.assertEqual(row["drafting_passes"], 0)
                self.assertGreater(row["plain_seconds"], 0)
            if row["mode"] == "on":
                self.assertGreaterEqual(row["drafting_passes"], row["passes"] - row["sequences"])
                self.assertGreater(row["drafting_seconds"], 0)
                # Random heads of a 4096-token vocabulary would almost never match the trunk.
                self.assertGreater(row["accepted"], row["drafted"] / 5)

    def test_runs_take_turns_and_pool(self):
        rows = {}
        for runs in (1, 2):
            out = os.path.join(self.dir, "runs%d.json" % runs)
            r = run("--shape", "model", "--speculative", "--acceptance", TRACE, "--batch-sizes", "2",
                    "--sequences", "2", "--prompt-tokens", "16", "--new-tokens", "16", "--runs", str(runs),
                    "--json", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out) as f:
                rows[runs] = {row["mode"]: row for row in json.load(f)["rows"]}
            if runs == 2:
                order = [line.split("speculation ")[1] for line in r.stderr.splitlines()
                         if line.startswith("bench: batch 2, speculation")]
                self.assertEqual(order, ["off, run 1 of 2 ...", "on, run 1 of 2 ...", "auto, run 1 of 2 ...",
                                         "off, run 2 of 2 ...", "on, run 2 of 2 ...", "auto, run 2 of 2 ..."])
        for mode in ("off", "on", "auto"):
            # Each run's speed-up is over the off run of its turn; the median of two is their mean.
            two = rows[2][mode]
            speedups = [rate / off for rate, off in zip(two["run_tokens_per_second"],
                                                         rows[2]["off"]["run_tokens_per_second"])]
            self.assertEqual(len(two["run_speedups"]), 2)
            for got, want in zip(two["run_speedups"], speedups):
                self.assertAlmostEqual(got, want, delta=1e-9 * want)
            self.assertAlmostEqual(two["median_speedup"], sum(speedups) / 2, delta=1e-9 * sum(speedups))
        self.assertEqual(rows[2]["off"]["run_speedups"], [1.0, 1.0])
        for mode in ("off", "on"):
            one, two = rows[1][mode], rows[2][mode]
            self.assertEqual((one["runs"], two["runs"]), (1, 2))
            self.assertEqual(len(two["run_tokens_per_second"]), 2)
            # Every run replays the same draws, so two runs pool twice one run's counts.
            for key in ("sequences", "tokens", "sequence_steps", "passes", "drafted", "accepted", "drafting_passes"):
                self.assertEqual(two[key], 2 * one[key], (mode, key))
            seconds = two["drafting_seconds"] + two["plain_seconds"]
            self.assertAlmostEqual(two["tokens_per_second"], two["tokens"] / seconds, delta=1e-6 * two["tokens"])

    def test_bad_traces_and_flags_fail_with_one_line(self):
        bad = os.path.join(self.dir, "bad.json")
        with open(bad, "w") as f:
            json.dump({"num_draft": 2, "verifies": {"3": [1, 1, 1, 1]}}, f)
        for args, message in [
            (["--shape", "model", "--acceptance", bad], "k = 3 > num_draft 2"),
            (["--shape", "model", "--acceptance", os.path.join(self.dir, "none.json")],
             "cannot open acceptance trace"),
            (["--shape", "model", "--acceptance", TRACE, "--num-draft", "4"], "--num-draft 4"),
            (["--shape", "7b", "--acceptance", TRACE], "--shape 7b runs on the CUDA backend"),
            (["--shape", "model", "--acceptance", TRACE, "--runs", "0"], "--runs"),
        ]:
            r = run("--speculative", *args)
            self.assertEqual(r.returncode, 1, args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn(message, r.stderr)


if __name__ == "__main__":
    unittest.main()
