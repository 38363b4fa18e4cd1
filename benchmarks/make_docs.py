"""Render docs/benchmarks.md from benchmarks/results/*.jsonl (and benchmarks/notes.md).

python benchmarks/make_docs.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "loss",
    "views",
    "throughput",
    "lightly_throughput",
    "resume",
    "label_efficiency",
    "proxy",
    "finetune_parallel",
]
TITLES = {
    "loss": "NT-Xent forward + backward (ms)",
    "views": "Augmented views per second",
    "throughput": "Pretraining throughput and pipeline efficiency (steady state from 2026-11-26 on)",
    "lightly_throughput": "lightly's SimCLR on the same workload",
    "resume": "Exact resume after kill -9 under torchrun",
    "label_efficiency": "Label efficiency on real data",
    "proxy": "Recipe proxy (CPU, 28 px, minutes of pretraining): a proxy, not the configs' result",
    "finetune_parallel": "Fine-tuning runs side by side (finetune.parallel)",
}


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def _hardware(h: dict) -> str:
    where = h.get("gpu") or f"CPU: {h.get('cpu', '?')}, {h.get('cpu_threads')} threads"
    libs = ", ".join(
        f"{k} {h[k]}" for k in ("torch", "monai", "timm", "lightly", "python") if k in h
    )
    return f"{where}; {libs}"


def main() -> None:
    parts = [(HERE / "notes.md").read_text().strip(), ""]
    for name in ORDER:
        path = HERE / "results" / f"{name}.jsonl"
        if not path.exists():
            continue
        parts += [f"## {TITLES[name]}", ""]
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        if name == "label_efficiency":  # a later run supersedes the earlier one of its dataset
            where = {e["dataset"] + str(e["hardware"].get("gpu")): e for e in entries}  # per device
            entries = list(where.values())
        for entry in entries:
            title = entry.get("dataset", "")
            parts += [
                f"**{title + ': ' if title else ''}`{entry['command']}`** — {entry['date'][:10]}, "
                f"commit {entry.get('commit', '')}, {_hardware(entry['hardware'])}",
                "",
                _table(entry["rows"]),
                "",
            ]
            if entry.get("headline"):
                parts += ["> " + line if line else ">" for line in entry["headline"].splitlines()]
                parts += [""]
            if entry.get("peak"):
                parts += [
                    f"Device peak {entry['peak']['tflop_per_s']:.4g} TFLOP/s "
                    f"({entry['peak']['source']}); {entry['steps']} steps in windows of "
                    f"{entry['window']}, the first {entry.get('warmup', 1)} dropped as warm-up; "
                    f"{entry['workers']} DataLoader workers.",
                    "",
                ]
            if entry.get("recipes"):
                recipes = "; ".join(
                    f"`{k}`: {' '.join(v) or '-'}" for k, v in entry["recipes"].items()
                )
                pre = " ".join(entry.get("pretrain_overrides") or []) or "none (SimCLR)"
                parts += [
                    f"Recipes (evaluate overrides on top of the proxy's): {recipes}. Pretraining "
                    f"overrides: {pre}. Wall time per stage in this call (s; 0 where reused): "
                    f"{entry.get('seconds')}.",
                    "",
                ]
            if entry.get("pretrain"):
                p = entry["pretrain"]
                parts += [
                    f"Pretraining: {p['encoder']}, batch {p['batch']}, {p['steps']} steps, "
                    f"{p['seconds']:.0f} s; overrides {p.get('overrides')}; evaluation overrides "
                    f"{entry.get('evaluate_overrides')}.",
                    "",
                ]
    (HERE.parent / "docs" / "benchmarks.md").write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
