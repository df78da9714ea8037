"""``relentless-fast model train|evaluate`` (the ``train`` extra; TensorFlow imported lazily)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_BASE = Path("models") / "relentless_financial"
DEFAULT_CARD = Path("models") / "MODEL_CARD.md"


def register(sub: Any) -> None:
    p = sub.add_parser("model", help="train, export and evaluate relentless_financial")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    t = msub.add_parser("train", help="train versions 1-3 and export them (fixed seeds)")
    t.add_argument(
        "--base-path",
        type=Path,
        default=DEFAULT_BASE,
        help="model base path; versions go to BASE/<n>/ (default %(default)s)",
    )
    t.add_argument("--versions", type=int, nargs="+", default=[1, 2, 3])
    t.set_defaults(func=_train)
    e = msub.add_parser("evaluate", help="held-out metrics with/without context -> model card")
    e.add_argument("--base-path", type=Path, default=DEFAULT_BASE)
    e.add_argument(
        "--card",
        type=Path,
        default=DEFAULT_CARD,
        help="where to write the model card (default %(default)s)",
    )
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    e.set_defaults(func=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from relentless_fast.training.train import train_versions

    epochs = train_versions(args.base_path, tuple(args.versions))
    for v, n in epochs.items():
        print(f"version {v}: {n} epochs -> {args.base_path / str(v)}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from relentless_fast.training.evaluate import run

    run(args.base_path, args.card, n_boot=args.bootstrap)
    print(f"wrote {args.card}")
    return 0
