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
from conversion.data import DEFAULT_CACHE, Prepared
from edge.vision.align import align_face
from edge.wire.contract import MAX_AGE


def age_distribution(age: np.ndarray) -> np.ndarray:
    """DLDL label: a discretized Gaussian around the true age, wider for older faces (whose
    apparent age varies more)."""
    bins = np.arange(MAX_AGE + 1, dtype=np.float32)
    sigma = (1.5 + 0.05 * age)[:, None]
    dist = np.exp(-0.5 * ((bins[None, :] - age[:, None]) / sigma) ** 2)
    return (dist / dist.sum(1, keepdims=True)).astype(np.float32)


def aligned_crops(data: Prepared, index: np.ndarray, size: int) -> np.ndarray:
    """Plain (un-augmented) aligned crops, as the runtime makes them."""
    return np.stack([align_face(data.images[i], data.keypoints[i], size) for i in index])


def targets(data: Prepared, index: np.ndarray) -> dict[str, np.ndarray]:
    age = np.minimum(data.age[index], MAX_AGE).astype(np.float32)
    return {
        "gender": data.female[index].astype(np.float32)[:, None],
        "age": np.concatenate([age_distribution(age), age[:, None]], axis=1),
        "race": data.race[index].astype(np.int64),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="output folder for this training run")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--epochs", type=int, default=45)
    parser.add_argument("--size", type=int, default=64, help="face crop size in pixels")
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
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from conversion.model import build

    keras.utils.set_random_seed(args.seed)
    teacher = keras.models.load_model(args.teacher, compile=False) if args.teacher else None
    data = Prepared.load(args.cache)
    train_index, val_index = data.split(False), data.split(True)
    print(f"train {len(train_index)} faces, validation {len(val_index)} faces (sha1 split)")

    class TrainBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0
            self.order = train_index

        def __len__(self) -> int:
            return math.ceil(len(train_index) / args.batch)

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = np.random.default_rng([args.seed, self.epoch]).permutation(train_index)

        def __getitem__(self, i: int):
            rng = np.random.default_rng([args.seed, self.epoch, i])
            batch = self.order[i * args.batch : (i + 1) * args.batch]
            x = np.stack(
                [augmented_crop(data.images[j], data.keypoints[j], args.size, rng, args.robust) for j in batch]
            )
            x = x.astype(np.float32)
            y = targets(data, batch)
            if teacher is not None:
                # Distillation through the targets: the losses already take soft labels.
                out = teacher(x, training=False)
                w = args.teacher_weight
                y["gender"] = (1 - w) * y["gender"] + w * tf.sigmoid(out["gender"]).numpy()
                y["age"][:, :-1] = (1 - w) * y["age"][:, :-1] + w * tf.nn.softmax(out["age"]).numpy()
            # No weights at all unless asked: the runs recorded before this option then repeat
            # bit for bit.
            if args.child_weight == 1.0:
                return x, y
            ones = np.ones(len(batch), np.float32)
            children = np.where(data.age[batch] < 10, args.child_weight, 1.0).astype(np.float32)
            return x, y, {"gender": children, "age": ones, "race": ones}

    def age_loss(y_true, y_pred):
        dist, age = y_true[:, :-1], y_true[:, -1]
        probs = tf.nn.softmax(y_pred)
        expected = tf.reduce_sum(probs * tf.range(MAX_AGE + 1, dtype=tf.float32), axis=1)
        cross_entropy = keras.losses.categorical_crossentropy(dist, y_pred, from_logits=True)
        return cross_entropy + 0.1 * tf.abs(expected - age)

    model = build(args.size, args.width)
    if args.init:
        model.set_weights(keras.models.load_model(args.init, compile=False).get_weights())
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

    class ValidationFigures(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            out = self.model.predict(val_x, batch_size=256, verbose=0)
            accuracy = float(((out["gender"][:, 0] > 0) == (val_female == 1)).mean())
            probs = tf.nn.softmax(out["age"]).numpy()
            mae = float(np.abs(probs @ np.arange(MAX_AGE + 1) - val_age).mean())
            logs["val_gender_accuracy"], logs["val_age_mae"] = accuracy, mae
            print(f"  epoch {epoch + 1}: validation gender accuracy {accuracy:.4f}, age MAE {mae:.3f}")

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
