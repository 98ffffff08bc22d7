"""`petriage train`: train stage 1 or stage 2 from a data manifest (resumable; fine-tuning)."""
from __future__ import annotations

import argparse

from PETriageLib.reporting.json_text import to_json



def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a cascade stage from a data manifest",
                              description="Train stage 1 (wnl vs disease) or stage 2 (other vs pe) on a "
                                          "manifest (see docs/training.md). Re-running the same command "
                                          "resumes from OUT/last.pt.")
    p.add_argument("--manifest", required=True, nargs="+",
                   help="data manifest CSV(s) or phantom dataset manifest.csv file(s)")
    p.add_argument("--stage", type=int, choices=(1, 2), required=True)
    p.add_argument("--out", required=True, help="output folder (best.pt, last.pt, splits.json, history.json)")
    p.add_argument("--model", default="cbamdrn_d22", help="architecture name (petriage models)")
    p.add_argument("--width", type=float, default=0.5, help="width multiplier for the DRN family (default 0.5)")
    p.add_argument("--pool", choices=("avg", "avgmax"), default="avg",
                   help="DRN family: global pooling of each branch (avg = the paper; avgmax adds the max, for small lesions)")
    p.add_argument("--windows", default="vascular,lung", help="comma-separated window presets (default vascular,lung)")
    p.add_argument("--context", type=int, default=None, metavar="C",
                   help="DRN family: also feed the C slices each side of the classified one (2.5D); default 0 "
                        "(with --init-from: the checkpoint's; more fine-tunes it with context)")
    p.add_argument("--input-size", type=int, default=None,
                   help="default 128 (with --init-from: the checkpoint's; another size fine-tunes at that size)")
    p.add_argument("--crop", choices=("dynamic", "fixed"), default="dynamic")
    # None = the TrainConfig default (10 epochs, lr 1e-3, one-cycle), or with --init-from the
    # fine-tuning defaults (3 epochs, lr 1e-4, cosine).
    p.add_argument("--epochs", type=int, default=None, help="default 10 (3 with --init-from)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="slices per step and process (under torchrun the effective batch is this x ranks)")
    p.add_argument("--micro-batches", type=int, default=1, metavar="K",
                   help="split each step's batch into K forward/backward passes with summed gradients "
                        "(less memory; BatchNorm sees each part alone, as each rank's part under torchrun)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-3; 1e-4 with --init-from)")
    p.add_argument("--scheduler", choices=("onecycle", "cosine", "constant"), default=None,
                   help="default onecycle (cosine with --init-from)")
    p.add_argument("--balance", choices=("sampler", "weighted_loss", "none"), default="sampler")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--patience", type=int, default=4)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--target-sensitivity", type=float, default=None, help="default 0.95 stage 1, 0.98 stage 2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto")
    p.add_argument("--save-every", type=int, default=50, help="steps between resumable checkpoints")
    p.add_argument("--mask-loss", type=float, default=0.0, metavar="WEIGHT",
                   help="weight of the auxiliary lesion-map loss on the manifest's lesion masks (phantoms have "
                        "them); 0 = off (default)")
    p.add_argument("--init-from", default=None, help="fine-tune this checkpoint (its model and preprocessing)")
    p.add_argument("--cache", default=None, help="slice cache folder (default OUT/cache)")
    p.add_argument("--data", choices=("cache", "stream"), default="cache",
                   help="cache: preprocess every series once into the slice cache (default); stream: decode and "
                        "preprocess each step's slices in DataLoader workers, no cache (docs/scale.md)")
    p.add_argument("--no-cache", dest="data", action="store_const", const="stream", help="the same as --data stream")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers when streaming (default 2)")
    p.add_argument("--prefetch", type=int, default=2, help="micro-batches each streaming worker reads ahead (default 2)")
    p.add_argument("--series-per-worker", type=int, default=4,
                   help="decoded series each streaming worker keeps (an LRU; default 4)")
    p.add_argument("--splits", default=None, help="splits JSON to use or create (default OUT/splits.json)")
    p.add_argument("--ratios", default="5,3,2",
                   help="train,val,test ratios for a new patient split, and for patients missing from an "
                        "existing --splits file (data added since; default 5,3,2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from PETriageLib.training.config import TrainConfig
    from PETriageLib.training.train import fine_tune_config

    settings = dict(stage=args.stage, epochs=args.epochs, batch_size=args.batch_size,
                    micro_batches=args.micro_batches, lr=args.lr,
                    scheduler=args.scheduler, balance=args.balance, augment=not args.no_augment,
                    patience=args.patience, steps_per_epoch=args.steps_per_epoch,
                    target_sensitivity=args.target_sensitivity, seed=args.seed, threads=args.threads,
                    amp=args.amp, save_every=args.save_every, progress=not args.no_progress,
                    mask_loss_weight=args.mask_loss, input_size=args.input_size)
    # Left out when not given: the default of training or of fine-tuning (the checkpoint's size) applies.
    for name in ("epochs", "lr", "scheduler", "input_size"):
        if settings[name] is None:
            del settings[name]
    if args.init_from:
        return fine_tune_config(args.init_from, context=args.context, **settings)
    model_config = ({"width": args.width, "pool": args.pool}
                    if args.model.startswith(("drn", "cbamdrn", "fusadrn")) else {})
    if args.context:
        model_config["context"] = args.context  # a model without the option refuses it by name
    return TrainConfig(architecture=args.model, model_config=model_config,
                       windows=[w.strip() for w in args.windows.split(",") if w.strip()],
                       crop=args.crop, **settings)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PETriageLib.training.distributed import cleanup, init_distributed
    from PETriageLib.training.pipeline import train_from_manifest

    cfg = config_from_args(args)
    ctx, device = init_distributed(args.device)  # one process, or this rank of a torchrun launch
    try:
        result = train_from_manifest(cfg, args.manifest, args.out, args.cache, args.splits,
                                     resume=not args.no_resume, device=device,
                                     ratios=tuple(float(r) for r in args.ratios.split(",")), ctx=ctx,
                                     data=args.data, workers=args.workers, prefetch=args.prefetch,
                                     series_per_worker=args.series_per_worker)
    finally:
        cleanup(ctx)
    if ctx.is_main:
        (Path(args.out) / "history.json").write_text(to_json(result.history, indent=1))
        print(to_json({"best": str(result.best_path), "best_epoch": result.best_epoch,
                       "threshold": result.threshold, "resumed_from": result.resumed_from,
                       "ranks": ctx.world_size}, indent=1))
    return 0
