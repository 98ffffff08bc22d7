"""`petriage fit-domain`: give a checkpoint its domain check (how far a series may lie from its training data)."""
from __future__ import annotations

import argparse

from PETriageLib.reporting.json_text import to_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit-domain", help="store the feature statistics of a checkpoint's training data, so that triage "
                           "refuses series unlike it",
        description="Computes the checkpoint's pooled features on (a sample of) its training patients' slices "
                    "and on its validation patients, fits their mean and shrunk covariance, sets the threshold "
                    "(the validation series' highest score times --margin) and writes them into the checkpoint. "
                    "petriage train does this itself; use this for checkpoints trained before it did.")
    p.add_argument("checkpoint", help="checkpoint file to give a domain check (rewritten unless --out; a "
                                      "registered model needs --out)")
    p.add_argument("--manifest", required=True, nargs="+", help="data manifest CSV(s) the checkpoint was trained on")
    p.add_argument("--splits", required=True, help="the splits JSON the checkpoint was trained with")
    p.add_argument("--cache", required=True, help="slice cache folder (entries are reused and added)")
    p.add_argument("--out", default=None, help="write the checkpoint here instead of in place")
    p.add_argument("--max-train-series", type=int, default=None,
                   help="use at most this many training patients (seeded sample; default all)")
    p.add_argument("--max-train-slices", type=int, default=None, help="cap on training slices (default 6000)")
    p.add_argument("--quantile", type=float, default=None, help="percentile of a series' slice distances it "
                                                               "scores (default 10)")
    p.add_argument("--margin", type=float, default=None, help="threshold = margin x highest validation score "
                                                             "(default 1.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from PETriageLib.models.fast import set_threads
    from PETriageLib.training.domain_fit import fit_checkpoint_domain

    set_threads(args.threads)
    options = {k: v for k, v in (("max_train_slices", args.max_train_slices), ("quantile", args.quantile),
                                 ("margin", args.margin)) if v is not None}
    domain = fit_checkpoint_domain(args.checkpoint, args.manifest, args.splits, args.cache, out=args.out,
                                   max_train_series=args.max_train_series, seed=args.seed,
                                   progress=not args.no_progress, **options)
    print(to_json({"checkpoint": args.out or args.checkpoint, "threshold": round(domain.threshold, 2),
                      "quantile": domain.quantile, **domain.info}, indent=1))
    return 0
