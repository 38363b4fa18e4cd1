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
    "view_share",
    "throughput",
    "lightly_throughput",
    "resume",
    "label_efficiency",
    "proxy",
    "archive",
    "finetune_parallel",
    "preprocess",
    "demo_pool",
]
TITLES = {
    "loss": "NT-Xent forward + backward (ms)",
    "views": "Augmented views per second",
    "view_share": "The views' share of a SimCLR step",
    "throughput": "Pretraining throughput and pipeline efficiency (steady state from 2026-11-26 on)",
    "lightly_throughput": "lightly's SimCLR on the same workload",
    "resume": "Exact resume after kill -9 under torchrun",
    "label_efficiency": "Label efficiency on real data",
    "proxy": "Recipe proxy (CPU, 28 px, minutes of pretraining): a proxy, not the configs' result",
    "archive": "Pretrain once on an archive, evaluate on many tasks",
    "finetune_parallel": "Fine-tuning runs side by side (finetune.parallel)",
    "preprocess": "Building the preprocessed cache in one process and in several",
    "demo_pool": "The demo's unlabelled pool (synthetic phantoms, CPU)",
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


def _method_of(entry: dict) -> str:
    """The pretraining method and head of a proxy record, from its pretrain overrides."""
    over = entry.get("pretrain_overrides") or []
    name = next((o.split("=", 1)[1] for o in over if o.startswith("method.name=")), "simclr")
    rest = [o.removeprefix("method.") for o in over if not o.startswith("method.name=")]
    return name + (f" ({', '.join(rest)})" if rest else "")


def _methods_table(entries: list[dict]) -> str:
    """Pretraining methods side by side: the proxy records that ran the default evaluation
    recipe alone (LP-FT), one line per method, data set and budget (the latest record wins)."""
    rows: dict[tuple, dict] = {}
    for e in entries:
        if e.get("recipes") != {"lpft": ["finetune.mode=lpft"]} or not _superseded(e):
            continue
        for r in e["rows"]:
            if r.get("result", "ok") != "ok" or "protocol" not in r:
                continue
            key = (r["dataset"], r["budget"], _method_of(e))
            row = rows.setdefault(key, {"data set": key[0], "budget": key[1], "method": key[2]})
            for protocol in ("finetune", "linear"):  # the same columns in every row
                row.setdefault(protocol, "")
                row.setdefault(f"{protocol} - strongest random (sd)", "")
            gain = f"{r['minus_strongest_random']:+.3f} ({r['paired_sd']:.3f})"
            row[r["protocol"]] = round(r["pretrained"], 3)
            row[f"{r['protocol']} - strongest random (sd)"] = gain
            row["strongest random"] = r["strongest_random"]
            row["commit"] = e.get("commit", "")
    ordered = sorted(rows.values(), key=lambda r: (r["data set"], r["budget"], r["method"]))
    head = (
        "**Pretraining methods side by side** (rows of the records below that ran the LP-FT "
        "recipe alone; AUROC mean of 5 seeds; the gain is over the strongest random "
        "initialisation of that call, with the sd of the paired per-seed differences):"
    )
    return head + "\n\n" + _table(ordered) if ordered else ""


SUPERSEDED = (
    "*Superseded (issue 45): measured against a random initialisation stopped after a few "
    "epochs under LP-FT (on the proxy its probe was kept, best step 0), with batch norm's stored "
    'statistics; see "Read first" at the top and the converged proxy records.*'
)


def _superseded(entry: dict) -> bool:
    """A proxy record from before the converged baseline (issue 44): its rows lack the paired
    interval and the fine-tunes' steps that every later record has."""
    return not any("ci95" in r for r in entry["rows"])


def _converged_table(entries: list[dict]) -> str:
    """Does pretraining save labels: the converged proxy records, one line per data set, budget,
    pretrained run and protocol (the latest record wins)."""
    rows: dict[tuple, dict] = {}
    for e in entries:
        if _superseded(e):
            continue
        for r in e["rows"]:
            if r.get("result", "ok") != "ok" or "protocol" not in r:
                continue
            key = (r["dataset"], r["budget"], r["init"], r["protocol"], r["recipe"])
            rows[key] = {
                "data set": r["dataset"],
                "budget": r["budget"],
                "pretrained run": r["init"],
                "protocol": r["protocol"],
                "recipe": r["recipe"],
                "AUROC": round(r["pretrained"], 3),
                "strongest random": r["strongest_random"],
                "gain (95% CI)": f"{r['minus_strongest_random']:+.3f} {r['ci95']}",
                "commit": e.get("commit", ""),
            }
    ordered = sorted(rows.values(), key=lambda r: tuple(r.values())[:5])
    head = (
        "**Does pretraining save labels on the proxy** (records after issue 44: every fine-tune "
        "trained until validation stops improving, random initialisation included; AUROC mean "
        "of 5 seeds; the gain is over the strongest random initialisation of that call, with the "
        "95% t-interval of the paired per-seed differences; each fine-tune's best and last step "
        "are in the records below):"
    )
    return head + "\n\n" + _table(ordered) if ordered else ""


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
        if name == "proxy":
            parts += [_converged_table(entries), ""]
            parts += [SUPERSEDED, "", _methods_table(entries), ""]
        for entry in entries:
            title = entry.get("dataset", "")
            parts += [
                f"**{title + ': ' if title else ''}`{entry['command']}`** — {entry['date'][:10]}, "
                f"commit {entry.get('commit', '')}, {_hardware(entry['hardware'])}",
                "",
                _table(entry["rows"]),
                "",
            ]
            if name == "proxy" and _superseded(entry):
                parts += [SUPERSEDED, ""]
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
                default = "none" if entry.get("pretrained") else "none (SimCLR)"
                pre = " ".join(entry.get("pretrain_overrides") or []) or default
                runs = "; ".join(  # --pretrained NAME overrides: several runs in one call
                    f"`{k}`: {' '.join(v) or '-'}" for k, v in entry.get("pretrained", {}).items()
                )
                parts += [
                    f"Recipes (evaluate overrides on top of the proxy's): {recipes}. Pretraining "
                    f"overrides: {pre}."
                    + (f" Pretraining runs (their own overrides): {runs}." if runs else "")
                    + f" Wall time per stage in this call (s; 0 where reused): "
                    f"{entry.get('seconds')}.",
                    "",
                ]
            if entry.get("pools"):  # the demo's pool
                parts += [
                    f"Pools (patients): {entry['pools']}, the first pool's labelled set evaluated; "
                    f"pretraining overrides {entry.get('pretrain_overrides') or '-'}, evaluation "
                    f"overrides {entry.get('evaluate_overrides') or '-'}. Wall time per stage (s; "
                    f"0 where reused): {entry.get('seconds')}.",
                    "",
                ]
            if entry.get("form"):  # the archive benchmark
                parts += [
                    f"Form: {entry['form']}, {entry['steps']} pretraining steps "
                    f"({entry.get('archive_steps', entry['steps'])} for the archive encoder). Peak resident "
                    f"memory: {entry.get('peak_rss_gib')} GiB (this process), "
                    f"{entry.get('peak_rss_children_gib')} GiB (the largest worker). Wall time "
                    f"per stage (s; 0 where reused): {entry.get('seconds')}.",
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
