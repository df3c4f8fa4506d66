"""Retrain the shipped age/gender model from scratch with one command.

    python -m conversion.pipeline [--data DIR] [--size 80] [--epochs 45] [--robust-epochs 20] [--run DIR]
                                  [--photos lfw fairface [aaf]] [--child-weight 2] [--seeds 7 [S ...]]

Steps: prepare UTKFace, LFW and FairFace (once each; cached: see conversion/photos.py for where
FairFace's images come from); train on clean UTKFace crops (RUN/clean); fine-tune that network
on UTKFace and the real photos together (FairFace's ages as bands), about 40 % of crops turned,
masked, sunglassed, dark or blurred, gender's loss balanced between women and men per age band
x race and children's weighted twice (RUN/robust); refit the age head alone on UTKFace
(RUN/age); shift the gender logit so women and men weigh alike on FairFace's val photos
(RUN/calibrated); convert to int8, evaluate float32 vs int8 on the validation split and the real
photos held out, then install the int8 model and its figures into models/tflite/. The defaults
are run 13b's recipe (which had no gender offset); the shipped model, run 18+22, continues run
13b with CPU continuations and a soup (`conversion.soup`), then takes the last stages here (the
model card's "Retrain" gives the commands).

With several `--seeds`, the fine-tune runs once per seed from the same clean network
(RUN/robust-SEED) and the mean of their weights (`conversion.soup`) goes on as RUN/robust: the
one change that has moved this network on real photos is a soup (run 18+22), and fine-tunes
from one start are what soups are made of (the model card's "Next ideas"). RUN/robust/seeds.txt
records the seeds, and a later call with other seeds on the same --run is refused.

A stage whose RUN/<stage>/model.keras exists is skipped, so an interrupted run resumes, and the
training can run elsewhere: on an accelerator host, `--train-only` with the caches that
`python -m conversion.pack` carries there (any Keras backend: KERAS_BACKEND=jax), then here the
same command on the same --run converts, evaluates and installs.
Every step is seeded: on the same machine and library versions the figures repeat.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from conversion import calibrate, convert, evaluate, photos, prepare, soup, train
from conversion.data import DEFAULT_CACHE, DEFAULT_DATA
from conversion.photos import REAL_PHOTOS
from edge.vision.model_files import AGE_GENDER_MODEL, models_dir

# Beside RUN/robust/model.keras: the fine-tune seeds it was made with.
SEEDS_RECORD = "seeds.txt"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="UTKFace folder (manifest.csv + shards)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--run", type=Path, default=DEFAULT_CACHE / "runs" / "release")
    parser.add_argument("--epochs", type=int, default=45, help="epochs on clean crops")
    parser.add_argument(
        "--robust-epochs", type=int, default=20, help="epochs of the fine-tune on all the photos (0: skip it)"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=80,
        help="the network's input in pixels (train --size): the face spans 64 of them, the rest is hair, ears, chin",
    )
    parser.add_argument("--workers", type=int, help="processes making training batches (train --workers)")
    parser.add_argument(
        "--photos",
        nargs="+",
        choices=list(photos.DEFAULT_DATA),
        default=list(REAL_PHOTOS),
        metavar="NAME",
        help=f"real photo sets the fine-tune adds to UTKFace (train --photos; default: {' '.join(REAL_PHOTOS)})",
    )
    parser.add_argument(
        "--child-weight",
        type=train.loss_weight,
        default=2.0,
        help="children's gender loss in the fine-tune (train --child-weight)",
    )
    parser.add_argument(
        "--seeds",
        type=train.seed,
        nargs="+",
        default=[7],
        metavar="SEED",
        help="one fine-tune per seed; with several, their weights are averaged (conversion.soup)",
    )
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="stop after training (a machine without TensorFlow: conversion/pack.py); a later run on the same "
        "--run skips the stages whose RUN/<stage>/model.keras exists and converts",
    )
    parser.add_argument("--no-install", action="store_true", help="leave models/tflite/ untouched")
    args = parser.parse_args(argv)
    seeds = [str(seed) for seed in args.seeds]
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds {' '.join(seeds)}: give each seed once (a seed repeats its network)")
    # A finished stage is skipped, so a fine-tune made with other seeds would pass for this one.
    record = args.run / "robust" / SEEDS_RECORD
    made = record.read_text(errors="replace").split() if args.robust_epochs and record.is_file() else seeds
    if made != seeds:
        parser.error(
            f"{record.parent} was fine-tuned with --seeds {' '.join(made)}, not {' '.join(seeds)}: "
            "give those, another --run, or delete that folder"
        )

    # Every set looked for before the first one is prepared (UTKFace alone takes 15 minutes).
    missing = []
    if not (args.cache / "utkface" / "meta.npz").is_file() and not (args.data / "manifest.csv").is_file():
        missing.append(f"UTKFace at {args.data} (--data or AICCTV_UTKFACE)")
    for name in args.photos if args.robust_epochs else ():
        if not photos.Photos.prepared(name, args.cache) and not photos.DEFAULT_DATA[name].is_dir():
            missing.append(f"{name} at {photos.DEFAULT_DATA[name]} (AICCTV_{name.upper()})")
    if missing:
        parser.error(
            f"not found: {'; '.join(missing)}. The model card's Data says where each set comes from; "
            "--photos leaves a real photo set out"
        )
    if not (args.cache / "utkface" / "meta.npz").is_file():
        prepare.main(["--data", str(args.data), "--cache", str(args.cache)])
    for name in args.photos if args.robust_epochs else ():
        if not photos.Photos.prepared(name, args.cache):
            photos.main([name, "--cache", str(args.cache)])
    common = ["--cache", str(args.cache), "--size", str(args.size)]
    if args.workers:
        common += ["--workers", str(args.workers)]

    def stage(run: Path, step: Callable[[list[str]], None], options: list[str]) -> None:
        if (run / "model.keras").is_file():
            print(f"{run / 'model.keras'} exists: stage skipped")
        else:
            step(["--run", str(run), *options])

    final = clean = args.run / "clean"
    stage(clean, train.main, [*common, "--epochs", str(args.epochs)])
    if args.robust_epochs:
        final = args.run / "robust"
        fine_tune = [*common, "--init", str(clean / "model.keras"), "--robust", "--ema", "--lr", "5e-4"]
        fine_tune += ["--child-weight", str(args.child_weight), "--photos", *args.photos, "--balance"]
        fine_tune += ["--epochs", str(args.robust_epochs)]
        trained_now = not (final / "model.keras").is_file()
        if len(args.seeds) == 1:
            stage(final, train.main, [*fine_tune, "--seed", str(args.seeds[0])])
        else:
            ingredients = [args.run / f"robust-{seed}" for seed in args.seeds]
            for seed, run in zip(args.seeds, ingredients, strict=True):
                stage(run, train.main, [*fine_tune, "--seed", str(seed)])
            stage(final, soup.main, [str(run / "model.keras") for run in ingredients])
        if trained_now:
            record.write_text(" ".join(seeds) + "\n")
        # The age head refitted on UTKFace alone, everything else frozen: the fine-tune's gender
        # stays as it is, UTKFace's age MAE comes back (FairFace's bands are apparent ages; run
        # 11d: 5.11 -> 4.92 y).
        refit = final.parent / "age"
        head_only = ["--init", str(final / "model.keras"), "--only", "age_logits", "--lr", "1e-3", "--seed", "11"]
        stage(refit, train.main, [*common, *head_only, "--epochs", "3"])
        final = refit
    if args.train_only:
        print(f"trained: {final / 'model.keras'}")
        return
    if args.robust_epochs:
        # Women and men of every age judged alike on photos the network has not seen: one offset
        # on the gender logit, from all of FairFace's val photos (conversion/calibrate.py; here,
        # not on an accelerator host, whose packed caches hold only a sample of them).
        calibrated = final.parent / "calibrated"
        stage(calibrated, calibrate.main, ["--init", str(final / "model.keras"), "--cache", str(args.cache)])
        final = calibrated
    float_path, int8_path = convert.convert(final, final / AGE_GENDER_MODEL, args.cache)
    results = evaluate.evaluate({"float32": float_path, "int8": int8_path}, flip=True, cache=args.cache)
    print(evaluate.report(results))
    (args.run / "metrics.json").write_text(json.dumps(results, indent=1))
    if not args.no_install:
        shutil.copy(int8_path, models_dir() / AGE_GENDER_MODEL)
        shutil.copy(args.run / "metrics.json", models_dir() / "age_gender_metrics.json")
        print(f"installed {models_dir() / AGE_GENDER_MODEL}")


if __name__ == "__main__":
    main()
