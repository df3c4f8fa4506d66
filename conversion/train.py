"""Train the age/gender network on UTKFace (prepared with `python -m conversion.prepare`).

    python -m conversion.train --run runs/base [--epochs 45] [--size 64]

Writes RUN/model.keras and RUN/history.csv (per-epoch validation gender accuracy and age MAE).
Every random choice is seeded, so a run repeats on the same machine and library versions.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TypeVar

import numpy as np
from scipy.special import softmax

from conversion.augment import augmented_crop
from conversion.data import AGE_BANDS, DEFAULT_CACHE, RACES, Prepared, age_band_index
from conversion.photos import Photos
from edge.vision.align import align_face, context_of
from edge.vision.classify import BAND_STARTS
from edge.vision.detections import LEFT_EYE, NOSE_TIP, RIGHT_EYE
from edge.wire.contract import MAX_AGE

# `--turned-weight` applies from this `head_turn` on: a third of FairFace's photos, a tenth of the other sets'.
TURNED_AT = 0.2
N = TypeVar("N", int, float)


def _checked_number(read: Callable[[str], N], accept: Callable[[N], bool], noun: str, rule: str) -> Callable[[str], N]:
    """An argparse type: TEXT read as a NOUN, refused in one line unless `accept` holds (RULE)."""

    def parse(text: str) -> N:
        try:
            value = read(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {noun}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{rule}, not {text}")
        return value

    return parse


# A loss weight of 0, less, NaN or infinity would silence, invert or swamp its loss.
loss_weight = _checked_number(
    float, lambda w: math.isfinite(w) and w > 0, "number", "must be a finite number above 0 (1: weighed as the rest)"
)
# NumPy's generators take no negative seed.
seed = _checked_number(int, lambda s: s >= 0, "whole number", "must be 0 or more")


def age_distribution(age: np.ndarray) -> np.ndarray:
    """DLDL label: a discretized Gaussian around the true age, wider for older faces (whose
    apparent age varies more)."""
    bins = np.arange(MAX_AGE + 1, dtype=np.float32)
    sigma = (1.5 + 0.05 * age)[:, None]
    dist = np.exp(-0.5 * ((bins[None, :] - age[:, None]) / sigma) ** 2)
    return (dist / dist.sum(1, keepdims=True)).astype(np.float32)


def band_distribution(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """A label for an age known only as a band of years (FairFace's): uniform over the band."""
    bins = np.arange(MAX_AGE + 1, dtype=np.float32)
    dist = ((bins[None, :] >= first[:, None]) & (bins[None, :] <= last[:, None])).astype(np.float32)
    return dist / np.maximum(dist.sum(1, keepdims=True), 1.0)


def aligned_crops(data: Prepared | Photos, index: np.ndarray, size: int) -> np.ndarray:
    """Plain (un-augmented) aligned crops, as the runtime makes them."""
    context = context_of(size)
    return np.stack([align_face(data.images[i], data.keypoints[i], size, context=context) for i in index])


def gender_balance(female: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Per-face gender loss weights under which women and men weigh alike within each cell (an
    age band × race group, or one whole data set): a cell's majority gender no longer sets the
    model's prior for faces like it. Mean 1; a gender with a handful of faces in a cell is not
    weighted more than 4x."""
    weights = np.ones(len(female), np.float32)
    for cell in np.unique(cells):
        members = cells == cell
        for value in (0, 1):
            mine = members & (female == value)
            if mine.any():
                weights[mine] = min(members.sum() / (2 * mine.sum()), 4.0)
    return weights / weights.mean()


def head_turn(keypoints: np.ndarray) -> np.ndarray:
    """How far each face (keypoints (N, 6, 2)) is turned aside: the nose tip's offset from the
    point between the eyes, in eye distances. 0 is frontal. On FairFace's val photos run 18 gets
    gender right for 92.9 % of faces under 0.1 and 85.5 % of those at 0.3 and over (a fifth of
    them); on LFW's and All-Age-Faces' it barely moves (`conversion.evaluate`). The runtime
    already prefers frontal views of a visitor (`edge.vision.analyzer.frontal_quality`, the
    nose's distances to the two eyes); this measure is in eye distances so that its bins read
    the same on every photo set."""
    eyes = keypoints[:, [RIGHT_EYE, LEFT_EYE]].astype(np.float64)
    between = eyes.mean(axis=1)
    distance = np.maximum(np.linalg.norm(eyes[:, 1] - eyes[:, 0], axis=1), 1e-6)
    return np.abs(keypoints[:, NOSE_TIP, 0] - between[:, 0]) / distance


def band_balance(sets: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """Per-face weights under which every age band of a set weighs alike (a band's faces count
    for a set's share of faces over its number of bands), at most 4x; faces without a band
    (`bands` -1) keep 1. Real photo sets are mostly 20-39 year olds; a shop's owner reads every
    band, and fairface-dev weighs each alike."""
    weights = np.ones(len(sets), np.float32)
    for s in np.unique(sets):
        members = (sets == s) & (bands >= 0)
        present = np.unique(bands[members])
        for band in present:
            mine = members & (bands == band)
            weights[mine] = min(members.sum() / (len(present) * mine.sum()), 4.0)
    return weights


@dataclass
class Pool:
    """The training faces of one run: UTKFace's training split, then each real photo set's (whose
    labels may lack an age or a race: those heads then learn nothing from them), with the targets
    and loss weights of each face."""

    utkface: Prepared
    held_out: dict[str, tuple[Photos, np.ndarray]]
    images: list[np.ndarray]
    keypoints: list[np.ndarray]
    source: np.ndarray  # which set: 0 UTKFace, k the k-th --photos set
    rows: np.ndarray  # the face's row in its set
    female: np.ndarray
    age: np.ndarray  # the exact age, or a band's middle
    first: np.ndarray  # the band's first and last year (equal for an exact age; -1: unknown)
    last: np.ndarray
    race: np.ndarray
    sample_weight: dict[str, np.ndarray] | None

    @classmethod
    def assemble(cls, args: argparse.Namespace, quiet: bool = False) -> Pool:
        say = (lambda *_: None) if quiet else print
        data = Prepared.load(args.cache)
        train_index = data.split(False)
        say(f"train {len(train_index)} faces, validation {len(data.split(True))} faces (sha1 split)")
        images, keypoints = [data.images], [data.keypoints]
        female = data.female[train_index].astype(np.float32)
        age = np.minimum(data.age[train_index], MAX_AGE).astype(np.float32)
        first, last = age.copy(), age.copy()
        race = data.race[train_index].astype(np.int64)
        source = np.zeros(len(train_index), np.int64)
        rows = train_index
        held_out: dict[str, tuple[Photos, np.ndarray]] = {}
        for k, name in enumerate(args.photos, 1):
            photos = Photos.load(name, args.cache)
            mine, held_out[name] = photos.split(False), (photos, photos.split(True))
            say(f"{name}: train {len(mine)} photos, held out {len(held_out[name][1])}")
            images.append(photos.images)
            keypoints.append(photos.keypoints)
            female = np.concatenate([female, photos.female[mine].astype(np.float32)])
            first = np.concatenate([first, photos.age_first[mine].astype(np.float32)])
            last = np.concatenate([last, photos.age_last[mine].astype(np.float32)])
            race = np.concatenate([race, photos.race[mine].astype(np.int64)])
            source = np.concatenate([source, np.full(len(mine), k)])
            rows = np.concatenate([rows, mine])
        age = np.where(first >= 0, (first + last) / 2, 0).astype(np.float32)
        known_race = race >= 0
        race = np.maximum(race, 0)
        sample_weight = None
        # No weights at all unless asked: the runs recorded before these options then repeat bit for bit.
        if args.photos or args.balance or args.child_weight != 1.0 or args.balance_bands or args.turned_weight != 1.0:
            bands = np.where(first >= 0, age_band_index(age), -1)
            cells = (source * len(AGE_BANDS) + np.maximum(bands, 0)) * len(RACES) + race
            gender = gender_balance(female.astype(np.int8), cells) if args.balance else np.ones(len(rows), np.float32)
            gender *= np.where((first >= 0) & (age < 10), args.child_weight, 1.0).astype(np.float32)
            if args.balance_bands:
                gender *= band_balance(source, bands)
                gender /= gender.mean()
            if args.turned_weight != 1.0:
                turn = np.concatenate([head_turn(kps[rows[source == k]]) for k, kps in enumerate(keypoints)])
                gender *= np.where(turn >= TURNED_AT, args.turned_weight, 1.0).astype(np.float32)
                gender /= gender.mean()
            has_age = (first >= 0) & ((source == 0) | args.photo_ages)
            sample_weight = {"gender": gender, "age": has_age.astype(np.float32), "race": known_race.astype(np.float32)}
        return cls(data, held_out, images, keypoints, source, rows, female, age, first, last, race, sample_weight)

    def __len__(self) -> int:
        return len(self.rows)

    def targets(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        target = age_distribution(self.age[batch])
        band = self.first[batch] != self.last[batch]
        target[band] = band_distribution(self.first[batch][band], self.last[batch][band])
        return {
            "gender": self.female[batch][:, None],
            "age": np.concatenate([target, self.age[batch][:, None]], axis=1),
            "race": self.race[batch],
        }


class Batches:
    """The epochs' batches, in order: (uint8 crops, targets[, loss weights]). Batch i of epoch e
    is seeded by (seed, e, i) alone, so the stream is the same however many workers make it."""

    def __init__(self, pool: Pool, args: argparse.Namespace, workers: int) -> None:
        self.pool, self.args, self.workers = pool, args, workers
        self.steps = math.ceil(len(pool) / args.batch)
        self._order: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's order of the pool, drawn once per epoch. Every epoch is shuffled, the first
        too: the caches are in file-name order, which for UTKFace is age order (runs up to 12 saw
        their first epoch unshuffled)."""
        if self._order is None or self._order[0] != epoch:
            self._order = epoch, np.random.default_rng([self.args.seed, epoch]).permutation(len(self.pool))
        return self._order[1]

    def make(self, epoch: int, i: int) -> tuple:
        args, pool = self.args, self.pool
        batch = self.order(epoch)[i * args.batch : (i + 1) * args.batch]
        rng = np.random.default_rng([args.seed, epoch, i])
        context = context_of(args.size)
        x = np.stack(
            [
                augmented_crop(
                    pool.images[pool.source[j]][pool.rows[j]],
                    pool.keypoints[pool.source[j]][pool.rows[j]],
                    args.size,
                    rng,
                    args.robust,
                    context,
                )
                for j in batch
            ]
        )
        if pool.sample_weight is None:
            return x, pool.targets(batch)
        return x, pool.targets(batch), {k: w[batch] for k, w in pool.sample_weight.items()}

    def __iter__(self) -> Iterator[tuple]:
        keys = ((epoch, i) for epoch in range(self.args.epochs) for i in range(self.steps))
        if self.workers <= 1:
            yield from (self.make(*key) for key in keys)
            return
        context = multiprocessing.get_context("spawn")
        with context.Pool(self.workers, initializer=_start_worker, initargs=(self.args,)) as workers:
            # A bounded read-ahead: the workers never run more than a few batches ahead of training.
            ahead = deque(workers.apply_async(_worker_batch, key) for key in islice(keys, 3 * self.workers))
            while ahead:
                batch = ahead.popleft().get()
                for key in islice(keys, 1):
                    ahead.append(workers.apply_async(_worker_batch, key))
                yield batch


_worker: list[Batches] = []


def _start_worker(args: argparse.Namespace) -> None:
    import cv2

    # One thread each: the workers already use every core between them.
    cv2.setNumThreads(1)
    _worker.append(Batches(Pool.assemble(args, quiet=True), args, workers=1))


def _worker_batch(epoch: int, i: int) -> tuple:
    return _worker[0].make(epoch, i)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="output folder for this training run")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--epochs", type=int, default=45)
    parser.add_argument(
        "--size",
        type=int,
        default=64,
        help="crop size in pixels; the face spans 64 of them, so a larger crop sees more around it (hair, ears)",
    )
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=seed, default=1)
    parser.add_argument("--teacher", type=Path, help="a trained model.keras to distil from (soft targets)")
    parser.add_argument("--teacher-weight", type=float, default=0.5, help="share of the targets from the teacher")
    parser.add_argument("--ema", action="store_true", help="keep an exponential moving average of the weights")
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="processes making the augmented batches (1: in this one); the batches are the same either way",
    )
    parser.add_argument("--init", type=Path, help="start from this model.keras's weights (a warm restart)")
    parser.add_argument(
        "--robust",
        type=float,
        nargs="?",
        const=1.0,
        default=0.0,
        metavar="SHARE",
        help="also augment with turned heads, masks, sunglasses, low light and motion blur, at SHARE times "
        "conversion.augment's shares (1 if no SHARE is given: run 5 in the model card)",
    )
    parser.add_argument(
        "--child-weight",
        type=loss_weight,
        default=1.0,
        help="weight of children's (0-9) gender loss: their gender is the hardest to read, and the "
        "robust stage costs them most",
    )
    parser.add_argument(
        "--photos",
        nargs="+",
        default=[],
        metavar="NAME",
        help="also train on these real photo sets (lfw: gender; fairface: gender, age band, race; aaf: gender, "
        "age), framed as the runtime frames real faces (python -m conversion.photos NAME first)",
    )
    parser.add_argument(
        "--photo-ages",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="learn age from the real photos' age bands too (off: they teach gender and race only; FairFace's "
        "apparent-age bands cost UTKFace's age MAE 0.24 y in run 11)",
    )
    parser.add_argument(
        "--only",
        metavar="LAYER",
        help="train this layer alone, every other one frozen (e.g. age_logits: refit the age head on UTKFace "
        "to a network whose features came from elsewhere; the gender output stays exactly as it was)",
    )
    parser.add_argument(
        "--balance",
        action="store_true",
        help="weight gender's loss so women and men weigh alike within each age band x race of each set",
    )
    parser.add_argument(
        "--balance-bands",
        action="store_true",
        help="weight gender's loss so every age band of each set weighs alike (children, teenagers and "
        "the old count as much as 20-39 year olds)",
    )
    parser.add_argument(
        "--turned-weight",
        type=loss_weight,
        default=1.0,
        help=f"weight of gender's loss for faces turned aside (head_turn >= {TURNED_AT}: the nose a fifth of the eye "
        "distance or more off centre): on FairFace, where gender fails most",
    )
    args = parser.parse_args(argv)

    # The batch workers start before Keras does: a process forked after an accelerator runtime
    # started is unsafe, so they are spawned, each assembling the pool from the caches itself.
    faces = Pool.assemble(args)
    batches = Batches(faces, args, workers=args.workers)

    import keras

    from conversion.model import build

    keras.utils.set_random_seed(args.seed)
    teacher = keras.models.load_model(args.teacher, compile=False) if args.teacher else None
    data = faces.utkface
    val_index = data.split(True)

    def with_teacher(stream):
        for x, y, *weights in stream:
            x = x.astype(np.float32)
            if teacher is not None:
                # Distillation through the targets: the losses already take soft labels.
                out = teacher(x, training=False)
                w = args.teacher_weight
                soft_gender = keras.ops.convert_to_numpy(keras.ops.sigmoid(out["gender"]))
                soft_age = softmax(keras.ops.convert_to_numpy(out["age"]), axis=1)
                y["gender"] = (1 - w) * y["gender"] + w * soft_gender
                y["age"][:, :-1] = (1 - w) * y["age"][:, :-1] + w * soft_age
            yield (x, y, *weights)

    def age_loss(y_true, y_pred):
        dist, age = y_true[:, :-1], y_true[:, -1]
        probs = keras.ops.softmax(y_pred)
        expected = keras.ops.sum(probs * keras.ops.arange(MAX_AGE + 1, dtype="float32"), axis=1)
        cross_entropy = keras.losses.categorical_crossentropy(dist, y_pred, from_logits=True)
        return cross_entropy + 0.1 * keras.ops.abs(expected - age)

    model = build(args.size, args.width)
    if args.init:
        model.set_weights(keras.models.load_model(args.init, compile=False).get_weights())
    if args.only:
        for layer in model.layers:
            layer.trainable = layer.name == args.only
    steps = batches.steps * args.epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps - steps // 20, warmup_target=args.lr, warmup_steps=steps // 20
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.02, use_ema=args.ema, ema_momentum=0.999),
        loss={
            "gender": keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.05),
            "age": age_loss,
            "race": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        },
        loss_weights={"gender": 1.0, "age": 0.5, "race": 0.2},
    )
    val_x = aligned_crops(data, val_index, args.size).astype(np.float32)
    val_age, val_female = data.age[val_index], data.female[val_index]
    held_out = faces.held_out
    held_out_x = {
        name: aligned_crops(photos, index, args.size).astype(np.float32) for name, (photos, index) in held_out.items()
    }

    def women_men(logits: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
        right = (logits > 0) == (truth == 1)
        return float(right[truth == 1].mean()), float(right[truth == 0].mean())

    class ValidationFigures(keras.callbacks.Callback):
        """Per epoch: UTKFace validation gender and age, and the women/men gap, on UTKFace and on
        LFW's held-out people (real photos): a gender skew is watched, not found afterwards."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            out = self.model.predict(val_x, batch_size=256, verbose=0)
            accuracy = float(((out["gender"][:, 0] > 0) == (val_female == 1)).mean())
            probs = softmax(out["age"], axis=1)
            mae = float(np.abs(probs @ np.arange(MAX_AGE + 1) - val_age).mean())
            logs["val_gender_accuracy"], logs["val_age_mae"] = accuracy, mae
            women, men = women_men(out["gender"][:, 0], val_female)
            logs["val_women"], logs["val_men"] = women, men
            line = f"  epoch {epoch + 1}: validation gender {accuracy:.4f} (women {women:.3f}, men {men:.3f})"
            line += f", age MAE {mae:.3f}"
            for name, (photos, index) in held_out.items():
                out = self.model.predict(held_out_x[name], batch_size=256, verbose=0)
                women, men = women_men(out["gender"][:, 0], photos.female[index])
                logs[f"{name}_women"], logs[f"{name}_men"] = women, men
                line += f"; {name} women {women:.3f}, men {men:.3f}"
                if (photos.age_first[index] >= 0).all():
                    # The likeliest band, as the product reports it.
                    likeliest = np.add.reduceat(softmax(out["age"], axis=1), BAND_STARTS, axis=1).argmax(axis=1)
                    ours = likeliest == age_band_index(photos.age_first[index])
                    logs[f"{name}_our_band"] = float(ours.mean())
                    line += f", our age band {ours.mean():.3f}"
            print(line)

    args.run.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model.fit(
        with_teacher(batches),
        steps_per_epoch=batches.steps,
        epochs=args.epochs,
        callbacks=[ValidationFigures(), keras.callbacks.CSVLogger(str(args.run / "history.csv"))],
        verbose=2,
    )
    model.save(args.run / "model.keras")
    print(f"trained in {(time.perf_counter() - started) / 60:.1f} min -> {args.run / 'model.keras'}")


if __name__ == "__main__":
    main()
