"""The ``medcontrast`` command line: phantoms, index, pretrain, evaluate, report, embed, demo.

Each subcommand parses its arguments and hands plain values to one library function; problems
with the user's input end with a one-line message and exit status 2, problems of the machine
(a folder that cannot be created or written, a full disk) with one naming the path and exit
status 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence
from pathlib import Path

from medcontrast._version import __version__
from medcontrast.configs import shipped_configs
from medcontrast.errors import MedContrastError
from medcontrast.outputs import writable_folder
from medcontrast.threads import ENV, set_threads


def _cmd_phantoms(args: argparse.Namespace) -> int:
    from medcontrast.phantoms.writer import make_phantoms

    summary = make_phantoms(
        args.out_dir,
        patients=args.patients,
        seed=args.seed,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(
        f"wrote {summary.radiographs} radiographs and {summary.volumes} volumes of "
        f"{summary.patients} patients ({summary.dicom_files} DICOM files, {summary.nifti_files} "
        f"NIfTI files) to {summary.out_dir}; labels for {summary.labeled} samples in "
        f"{summary.out_dir / 'labels.csv'}"
    )
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from medcontrast.archive.index import build_index, outside_archive, write_index

    fractions = tuple(float(x) for x in args.split.split(","))
    if len(fractions) != 3:
        raise MedContrastError("--split takes three fractions: train,val,test (e.g. 0.7,0.15,0.15)")
    # Checked before a walk of hours, not after it.
    writable_folder(outside_archive(args.out, args.root).parent)
    result = build_index(
        args.root,
        labels=args.labels,
        labels_from_folders=args.labels_from_folders,
        salt_file=args.salt_file,
        split_fractions=fractions,
        verify=not args.no_verify,
        workers=args.workers,
        progress=not args.quiet,
        near_duplicates=args.near_duplicates,
        drop_duplicates=args.drop_duplicates,
    )
    out = write_index(result, args.out, args.root)
    print(result.summary())
    print(f"manifest: {out}")
    if result.n_ok == 0:
        print("error: no usable image was found", file=sys.stderr)
        return 1
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from medcontrast.embedding import checked_out, embed, print_summary

    if args.workers != "auto" and not args.workers.isdigit():
        raise MedContrastError(f"--workers takes a number or auto, not {args.workers!r}")
    # checked before the work, not after it (and never creating a folder inside an archive)
    writable_folder(checked_out(Path(args.out), [Path(p) for p in args.inputs]).parent)
    table = embed(
        args.run,
        args.inputs,
        args.out,
        labels=args.labels,
        batch_size=args.batch_size,
        device=args.device,
        workers="auto" if args.workers == "auto" else int(args.workers),
        cache_dir=args.cache_dir,
        salt_file=args.salt_file,
        progress=not args.quiet,
    )
    print_summary(table, Path(args.out))
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from medcontrast.config import PretrainConfig, load_config
    from medcontrast.pretrain import pretrain

    cfg = load_config(PretrainConfig, args.config, args.overrides)
    run_dir = pretrain(cfg, resume=args.resume)
    print(f"run folder: {run_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from medcontrast.config import EvaluateConfig, load_config
    from medcontrast.evaluate import evaluate, evaluate_tasks
    from medcontrast.evaluation.report import headline_text

    configs = args.config or [None]
    if len(configs) == 1:
        cfg = load_config(EvaluateConfig, configs[0], args.overrides)
        out = evaluate(cfg)
        print(f"\n{headline_text(out)}\n\nreport: {out / 'report.html'}")
        return 0
    # several tasks, one encoder: the overrides (e.g. inits=...) apply to every config
    cfgs = [load_config(EvaluateConfig, c, args.overrides) for c in configs]
    tasks_out = Path(args.tasks_out) if args.tasks_out else None
    folders, combined = evaluate_tasks(cfgs, configs, tasks_out)
    for folder in folders:
        print(f"\n{folder.name}\n{headline_text(folder)}")
    print(f"\ncombined report: {combined}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from medcontrast.evaluate import report
    from medcontrast.evaluation.report import headline_text

    report(args.eval_dir)
    print(f"{headline_text(Path(args.eval_dir))}\n\nreport: {Path(args.eval_dir) / 'report.html'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from medcontrast.demo import run_demo

    report = run_demo(args.out, patients=args.patients, seed=args.seed, fast=args.fast)
    print(f"\ndemo finished. Open the report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medcontrast",
        description="Self-supervised contrastive learning for medical images.",
    )
    parser.add_argument("--version", action="version", version=f"medcontrast {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error, not one line"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("phantoms", help="write the embedded default archive (synthetic patients)")
    p.add_argument("out_dir")
    p.add_argument("--patients", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: up to 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_phantoms)

    p = sub.add_parser("index", help="walk an archive (read-only) and write its manifest")
    p.add_argument("root")
    p.add_argument("--out", required=True, help="manifest CSV to write (outside the archive)")
    p.add_argument(
        "--labels",
        help="CSV with a label column and a key: path, series_uid, "
        "study_uid, accession or patient_id",
    )
    p.add_argument(
        "--labels-from-folders",
        action="store_true",
        help="label PNG/JPEG/NIfTI files by the name of their folder",
    )
    p.add_argument(
        "--salt-file", help="key for the pseudonyms (default ~/.config/medcontrast/salt)"
    )
    p.add_argument("--split", default="0.7,0.15,0.15", help="train,val,test patient fractions")
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip decoding each sample (faster; bad pixels are then found at training)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes for scanning and verifying")
    p.add_argument(
        "--near-duplicates",
        action="store_true",
        help="also look for copies that are only near-identical (same at low resolution)",
    )
    p.add_argument(
        "--drop-duplicates",
        action="store_true",
        help="skip all but one of images found under several patients or splits",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("embed", help="features of new images by a pretrained encoder -> table")
    p.add_argument("run", help="a finished pretraining run folder")
    p.add_argument("inputs", nargs="+", help="folders or files to index, or manifest CSVs")
    p.add_argument("--out", required=True, help=".parquet or .npz to write (outside the archive)")
    p.add_argument("--labels", help="labels CSV for the indexed inputs (as index --labels)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda")
    p.add_argument("--workers", default="auto", help="preprocessing processes (auto: per core)")
    p.add_argument("--cache-dir", help="where preprocessed arrays are kept (default: user cache)")
    p.add_argument(
        "--salt-file", help="key for the pseudonyms (default ~/.config/medcontrast/salt)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_embed)

    for name, func, text in (
        ("pretrain", _cmd_pretrain, "self-supervised pretraining -> run folder"),
        ("evaluate", _cmd_evaluate, "few-shot label-efficiency evaluation -> report"),
    ):
        p = sub.add_parser(name, help=text)
        shipped = ", ".join(sorted(shipped_configs(name)))
        if name == "evaluate":
            p.add_argument(
                "--config",
                action="append",
                help=f"a YAML file, or the name of a shipped config: {shipped}; give several "
                "to evaluate one encoder on several tasks (the overrides apply to each) with "
                "one combined report",
            )
            p.add_argument(
                "--tasks-out",
                default="",
                help="folder of the combined report of several tasks "
                "(default: <out_dir>/tasks-<names>)",
            )
        else:
            p.add_argument(
                "--config", help=f"a YAML file, or the name of a shipped config: {shipped}"
            )
        p.add_argument("overrides", nargs="*", help="key=value settings over the file")
        if name == "pretrain":
            p.add_argument(
                "--resume",
                action="store_true",
                help="continue the run in out_dir/name from its last checkpoint",
            )
        p.set_defaults(func=func)

    p = sub.add_parser(
        "report", help="rebuild report.md and report.html of an evaluation folder (no rerun)"
    )
    p.add_argument("eval_dir", help="an evaluation folder (out_dir/name of evaluate)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("demo", help="phantoms -> index -> pretrain -> evaluate -> report")
    p.add_argument("--out", default="medcontrast-demo")
    p.add_argument("--patients", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true", help="a much shorter run (smoke test)")
    p.set_defaults(func=_cmd_demo)
    for p in sub.choices.values():  # every command: one cap on the CPU threads it uses
        p.add_argument(
            "--threads",
            type=int,
            metavar="N",
            help=f"CPU threads for torch, NumPy's BLAS and the worker pools (default: "
            f"{ENV} where set, else every core this process may use)",
        )
    return parser


# Causes whose system wording misleads where a folder is being made.
_CAUSES = {
    errno.EEXIST: "a file stands where a folder is needed",
    errno.ENOTDIR: "part of the path is a file, not a folder",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
}


def os_error_line(exc: OSError) -> str:
    """One line naming the path and the cause of an operating-system error."""
    cause = _CAUSES.get(exc.errno) or exc.strerror or type(exc).__name__
    where = "" if exc.filename is None else f"{exc.filename}: "
    if exc.filename2 is not None:
        where = f"{exc.filename} -> {exc.filename2}: "
    return f"{where}{cause}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        set_threads(args.threads)
        return args.func(args)
    except MedContrastError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if args.debug:
            raise
        print(f"error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
