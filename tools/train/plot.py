#!/usr/bin/env python3
"""Loss curves of a training history (trainer_state.json) as a PNG.

  python3 tools/train/plot.py --state DIR/trainer_state.json --out loss_curves.png
"""

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def smooth(values, width):
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > width:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    with open(args.state) as f:
        state = json.load(f)
    hist, val, tune = state["history"], state["val_history"], state["tune_history"]
    n = len(hist[0]["loss"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    panels = 2 if tune else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.2), dpi=90, squeeze=False)
    ax = axes[0][0]
    tokens = [h["tokens"] / 1e6 for h in hist]
    for i in range(n):
        ax.plot(tokens, smooth([h["loss"][i] for h in hist], 10), color=colors[i], lw=1.2,
                label=f"head {i} train (token t+{i + 1})")
        ax.plot([v["tokens"] / 1e6 for v in val], [v["loss"][i] for v in val], "o--", color=colors[i],
                ms=3, lw=0.8, label=f"head {i} validation")
    starts = [r["start_step"] for r in state["runs"][1:]]
    for s in starts:
        at = next((h["tokens"] / 1e6 for h in hist if h["step"] >= s), None)
        if at is not None:
            ax.axvline(at, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title("multi-token training" + (" (dotted lines: resumed runs)" if starts else ""))
    ax.set_ylim(top=min(6.0, ax.get_ylim()[1]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)

    if tune:
        ax = axes[0][1]
        for i in range(1, n):
            ax.plot([t["tune_step"] for t in tune], [t["loss"][i - 1] for t in tune], color=colors[i],
                    label=f"head {i}")
        ax.set_xlabel("head-tuning step (last run)")
        ax.set_ylabel("cross-entropy to head 0 at t+i (nats)")
        ax.set_title("head tuning (trunk frozen)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out)


if __name__ == "__main__":
    main()
