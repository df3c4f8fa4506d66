"""How the shipped age/gender model holds up off the training distribution: synthetic masks,
sunglasses, low light, blur, JPEG, detector keypoint jitter, turned heads and small faces.

    python -m conversion.robustness [--faces 1000] [--model models/tflite/age_gender_int8.tflite]

A seeded sample of validation-split UTKFace faces is aligned as `conversion.prepare` and the
runtime do (BlazeFace keypoints, `align_face`); each corruption is then a pure function of
(aligned crop, rng), placed with the alignment template's keypoints, except keypoint jitter,
which perturbs the keypoints before alignment. All are approximations of the real thing: drawn
polygons are not masks, a cylinder warp of a frontal photo is not a turned head.

It also estimates BlazeFace's own keypoint noise: the same face re-detected after random
rescaling, shifting and sensor noise, expressed as the alignment error it causes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from conversion.corrupt import (
    EYE_DISTANCE,
    defocus_blur,
    jitter_keypoints,
    jpeg,
    low_light,
    motion_blur,
    small_face,
    sunglasses,
    surgical_mask,
    turned_head,
)
from conversion.data import AGE_BANDS, DEFAULT_DATA, age_band_index, load_faces, validation_rows
from edge.vision.align import FACE_SIZE, align_face, face_transform

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]
JITTER = "keypoint jitter ±5 % eye dist., ±10°, ±5 % scale"
CONDITIONS: dict[str, Corruption | None] = {
    "clean": None,
    "surgical mask (nose tip to chin)": surgical_mask,
    "sunglasses": sunglasses,
    "low light (gamma, gain, noise)": low_light,
    "motion blur (11 % of width)": motion_blur,
    "defocus blur (disk r 4 % of width)": defocus_blur,
    "JPEG quality 20": jpeg,
    JITTER: None,  # applied to the keypoints before alignment
    "turned head, yaw 30° (cylinder warp)": turned_head,
    "turned head, yaw 50° (cylinder warp)": partial(turned_head, yaw=50.0),
    "small face, 32 px": small_face,
    "small face, 24 px": partial(small_face, pixels=24),
}


def keypoint_noise(images: list[np.ndarray], seed: int, repeats: int = 4) -> dict[str, float]:
    """BlazeFace's keypoint noise as the alignment error it causes: each face re-detected after a
    random rescale (±15 %), shift (±8 px) and sensor noise (sigma 4), the aligned crop's frame
    compared with the clean detection's. Returns standard deviations: rotation (degrees), scale
    (log, %) and shift (% of the eye distance)."""
    from conversion.prepare import find_keypoints

    rng = np.random.default_rng(seed)
    angles, scales, shifts = [], [], []
    for image in images:
        clean, source = find_keypoints(image)
        if source != 0:
            continue
        reference = np.vstack([face_transform(clean, FACE_SIZE), [0, 0, 1]])
        for _ in range(repeats):
            s = float(np.exp(rng.uniform(-0.15, 0.15)))
            side = round(image.shape[1] * s)
            moved = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            dx, dy = rng.integers(0, 17, 2)
            frame = cv2.copyMakeBorder(moved, int(dy), 16 - int(dy), int(dx), 16 - int(dx), cv2.BORDER_REPLICATE)
            frame = np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
            found, source = find_keypoints(frame)
            if source != 0:
                continue
            keypoints = (found - [dx, dy]) * (image.shape[1] / side)
            # The crop-frame map from the clean alignment to the noisy one.
            delta = face_transform(keypoints, FACE_SIZE) @ np.linalg.inv(reference)
            angles.append(np.degrees(np.arctan2(delta[1, 0], delta[0, 0])))
            scales.append(np.log(np.hypot(delta[0, 0], delta[1, 0])))
            centre = np.array([FACE_SIZE / 2, FACE_SIZE / 2, 1.0])
            shifts.append((delta @ centre - centre[:2]) / (EYE_DISTANCE * FACE_SIZE))
    shifts_array = np.array(shifts).reshape(-1, 2)
    return {
        "samples": len(angles),
        "rotation_deg": float(np.std(angles)),
        "scale_pct": 100 * float(np.std(scales)),
        "shift_x_pct_eye": 100 * float(np.std(shifts_array[:, 0])),
        "shift_y_pct_eye": 100 * float(np.std(shifts_array[:, 1])),
    }


def evaluate(faces: int, seed: int, model_path: Path | None, data: Path, jitter_faces: int) -> str:
    from conversion.prepare import find_keypoints
    from edge.vision.classify import AgeGenderModel

    rows = validation_rows(data)
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), min(faces, len(rows)), replace=False))
    rows = [rows[i] for i in pick]
    images = load_faces(rows, data)
    true_female = np.array([int(r["gender"]) for r in rows]) == 1
    true_age = np.array([float(r["age"]) for r in rows])
    keypoints = [find_keypoints(image)[0] for image in images]
    model = AgeGenderModel(model_path, num_threads=1)
    lines = [
        f"{len(rows)} validation faces (seed {seed}), {model.size}x{model.size} crops, test-time flip on",
        f"{'condition':48}{'gender':>9}{'Δ':>8}{'flipped':>9}{'female':>8}{'age MAE':>9}{'Δ':>8}{'bias':>8}{'band':>8}",
    ]
    clean_female = clean_mae = None
    for c, (name, corruption) in enumerate(CONDITIONS.items()):
        p_female, age, bands = [], [], []
        for i, (image, kp) in enumerate(zip(images, keypoints, strict=True)):
            rng = np.random.default_rng([seed, c, i])
            if name == JITTER:
                kp = jitter_keypoints(kp, rng)
            crop = align_face(image, kp, model.size, context=model.context)
            if corruption is not None:
                crop = corruption(crop, rng)
            estimate = model(crop)
            p_female.append(estimate.p_female)
            age.append(estimate.age)
            bands.append(AGE_BANDS.index(estimate.age_band))
        female, age_array = np.array(p_female) >= 0.5, np.array(age)
        accuracy = 100 * float((female == true_female).mean())
        mae = float(np.abs(age_array - true_age).mean())
        band = 100 * float((np.array(bands) == age_band_index(true_age)).mean())
        if clean_female is None:
            clean_female, clean_mae, clean_accuracy = female, mae, accuracy
        flipped = 100 * float((female != clean_female).mean())
        bias = float((age_array - true_age).mean())
        lines.append(
            f"{name:48}{accuracy:8.1f}%{accuracy - clean_accuracy:+7.1f} {flipped:7.1f}%{100 * female.mean():7.1f}%"
            f"{mae:8.2f}y{mae - clean_mae:+7.2f}{bias:+7.2f}y{band:7.1f}%"
        )
    lines.append(
        f"Δ: against clean; flipped: faces whose gender differs from clean; female: share called female"
        f" (truth {100 * true_female.mean():.1f} %); bias: mean signed age error;"
        " band: age-band accuracy (the likeliest band)"
    )
    if jitter_faces:
        noise = keypoint_noise(images[:jitter_faces], seed)
        lines.append(
            f"BlazeFace keypoint noise ({noise['samples']} re-detections of {min(jitter_faces, len(images))} faces"
            f" under ±15 % rescale, ±8 px shift, noise sigma 4): std rotation {noise['rotation_deg']:.2f}°,"
            f" scale {noise['scale_pct']:.1f} %, shift x {noise['shift_x_pct_eye']:.1f} % / y"
            f" {noise['shift_y_pct_eye']:.1f} % of the eye distance"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=1000, help="validation faces to sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, help="TFLite model (default: the shipped one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="UTKFace folder with manifest.csv")
    parser.add_argument("--jitter-faces", type=int, default=200, help="faces for the keypoint-noise estimate (0: skip)")
    args = parser.parse_args(argv)
    print(evaluate(args.faces, args.seed, args.model, args.data, args.jitter_faces))


if __name__ == "__main__":
    main()
