"""Train the age/gender network on UTKFace (prepared with `python -m conversion.prepare`).

    python -m conversion.train --run runs/base [--epochs 45] [--size 64]

Writes RUN/model.keras and RUN/history.csv (per-epoch validation gender accuracy and age MAE).
Every random choice is seeded, so a run repeats on the same machine and library versions.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from conversion.augment import augmented_crop
from conversion.data import AGE_BANDS, DEFAULT_CACHE, RACES, Prepared, age_band_index
from conversion.photos import Photos
from edge.vision.align import align_face, context_of
from edge.wire.contract import MAX_AGE


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
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--teacher", type=Path, help="a trained model.keras to distil from (soft targets)")
    parser.add_argument("--teacher-weight", type=float, default=0.5, help="share of the targets from the teacher")
    parser.add_argument("--ema", action="store_true", help="keep an exponential moving average of the weights")
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
        type=float,
        default=1.0,
        help="weight of children's (0-9) gender loss: their gender is the hardest to read, and the "
        "robust stage costs them most",
    )
    parser.add_argument(
        "--photos",
        nargs="+",
        default=[],
        metavar="NAME",
        help="also train on these real photo sets (lfw: gender; fairface: gender, age band, race), framed as the "
        "runtime frames real faces (python -m conversion.photos NAME first)",
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
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from conversion.model import build

    keras.utils.set_random_seed(args.seed)
    teacher = keras.models.load_model(args.teacher, compile=False) if args.teacher else None
    data = Prepared.load(args.cache)
    train_index, val_index = data.split(False), data.split(True)
    print(f"train {len(train_index)} faces, validation {len(val_index)} faces (sha1 split)")
    # One pool of training faces: UTKFace's, then each --photos set's (whose labels may lack an
    # age or a race: those heads then learn nothing from them).
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
        print(f"{name}: train {len(mine)} photos, held out {len(held_out[name][1])}")
        images.append(photos.images)
        keypoints.append(photos.keypoints)
        female = np.concatenate([female, photos.female[mine].astype(np.float32)])
        first = np.concatenate([first, photos.age_first[mine].astype(np.float32)])
        last = np.concatenate([last, photos.age_last[mine].astype(np.float32)])
        race = np.concatenate([race, photos.race[mine].astype(np.int64)])
        source = np.concatenate([source, np.full(len(mine), k)])
        rows = np.concatenate([rows, mine])
    has_age = ((first >= 0) & ((source == 0) | args.photo_ages)).astype(np.float32)
    has_race = (race >= 0).astype(np.float32)
    age = np.where(first >= 0, (first + last) / 2, 0).astype(np.float32)
    banded = first != last
    race = np.maximum(race, 0)
    cells = (source * len(AGE_BANDS) + np.where(first >= 0, age_band_index(age), 0)) * len(RACES) + race
    gender_weight = gender_balance(female.astype(np.int8), cells) if args.balance else np.ones(len(rows), np.float32)
    gender_weight *= np.where((first >= 0) & (age < 10), args.child_weight, 1.0).astype(np.float32)
    # No weights at all unless asked: the runs recorded before these options then repeat bit for bit.
    weighted = bool(args.photos) or args.balance or args.child_weight != 1.0
    pool = np.arange(len(rows))

    def age_target(batch: np.ndarray) -> np.ndarray:
        target = age_distribution(age[batch])
        band = banded[batch]
        target[band] = band_distribution(first[batch][band], last[batch][band])
        return target

    class TrainBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0
            self.order = pool

        def __len__(self) -> int:
            return math.ceil(len(pool) / args.batch)

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = np.random.default_rng([args.seed, self.epoch]).permutation(pool)

        def __getitem__(self, i: int):
            rng = np.random.default_rng([args.seed, self.epoch, i])
            batch = self.order[i * args.batch : (i + 1) * args.batch]
            x = np.stack(
                [
                    augmented_crop(
                        images[source[j]][rows[j]],
                        keypoints[source[j]][rows[j]],
                        args.size,
                        rng,
                        args.robust,
                        context_of(args.size),
                    )
                    for j in batch
                ]
            )
            x = x.astype(np.float32)
            y = {
                "gender": female[batch][:, None],
                "age": np.concatenate([age_target(batch), age[batch][:, None]], axis=1),
                "race": race[batch],
            }
            if teacher is not None:
                # Distillation through the targets: the losses already take soft labels.
                out = teacher(x, training=False)
                w = args.teacher_weight
                y["gender"] = (1 - w) * y["gender"] + w * tf.sigmoid(out["gender"]).numpy()
                y["age"][:, :-1] = (1 - w) * y["age"][:, :-1] + w * tf.nn.softmax(out["age"]).numpy()
            if not weighted:
                return x, y
            return x, y, {"gender": gender_weight[batch], "age": has_age[batch], "race": has_race[batch]}

    def age_loss(y_true, y_pred):
        dist, age = y_true[:, :-1], y_true[:, -1]
        probs = tf.nn.softmax(y_pred)
        expected = tf.reduce_sum(probs * tf.range(MAX_AGE + 1, dtype=tf.float32), axis=1)
        cross_entropy = keras.losses.categorical_crossentropy(dist, y_pred, from_logits=True)
        return cross_entropy + 0.1 * tf.abs(expected - age)

    model = build(args.size, args.width)
    if args.init:
        model.set_weights(keras.models.load_model(args.init, compile=False).get_weights())
    if args.only:
        for layer in model.layers:
            layer.trainable = layer.name == args.only
    steps = len(TrainBatches()) * args.epochs
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
            probs = tf.nn.softmax(out["age"]).numpy()
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
                    expected = tf.nn.softmax(out["age"]).numpy() @ np.arange(MAX_AGE + 1)
                    ours = age_band_index(expected) == age_band_index(photos.age_first[index])
                    logs[f"{name}_our_band"] = float(ours.mean())
                    line += f", our age band {ours.mean():.3f}"
            print(line)

    args.run.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model.fit(
        TrainBatches(),
        epochs=args.epochs,
        callbacks=[ValidationFigures(), keras.callbacks.CSVLogger(str(args.run / "history.csv"))],
        verbose=2,
    )
    model.save(args.run / "model.keras")
    print(f"trained in {(time.perf_counter() - started) / 60:.1f} min -> {args.run / 'model.keras'}")


if __name__ == "__main__":
    main()
