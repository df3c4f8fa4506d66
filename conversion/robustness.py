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

from conversion.augment import low_resolution
from conversion.data import DEFAULT_DATA, age_band_index, load_faces, validation_rows
from edge.vision.align import ALIGN_KEYPOINTS, FACE_SIZE, TEMPLATE, align_face, face_transform, template_keypoints
from edge.vision.detections import LEFT_EYE, MOUTH, NOSE_TIP, RIGHT_EYE

SHIFT = 4  # fixed-point bits for sub-pixel, anti-aliased drawing
EYE_DISTANCE = float(TEMPLATE[1, 0] - TEMPLATE[0, 0])  # fraction of the crop


def _points(crop: np.ndarray) -> dict[str, np.ndarray]:
    """Template keypoints of an aligned crop, and the eye distance, in its pixels."""
    size = crop.shape[1]
    kp = template_keypoints(size, size)
    return {"right_eye": kp[RIGHT_EYE], "left_eye": kp[LEFT_EYE], "nose": kp[NOSE_TIP], "mouth": kp[MOUTH]}


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << SHIFT)).astype(np.int32)


def surgical_mask(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A light-blue or white mask from the nose tip to the chin, with pleats and ear loops."""
    p = _points(crop)
    size = crop.shape[1]
    d = EYE_DISTANCE * size
    nose, mouth = p["nose"], p["mouth"]
    cx, top = nose[0], nose[1] - 0.05 * d * rng.uniform(0, 1)
    chin = mouth[1] + 1.2 * (mouth[1] - nose[1])
    half = 0.85 * d * rng.uniform(0.95, 1.05)  # half-width at the cheeks
    outline = np.array(
        [
            (cx - 0.6 * half, top + 0.05 * d),
            (cx, top),
            (cx + 0.6 * half, top + 0.05 * d),
            (cx + half, mouth[1] - 0.1 * d),
            (cx + 0.7 * half, chin - 0.1 * d),
            (cx, chin + 0.05 * d),
            (cx - 0.7 * half, chin - 0.1 * d),
            (cx - half, mouth[1] - 0.1 * d),
        ]
    )
    colour = (235, 205, 160) if rng.random() < 0.6 else (235, 235, 235)  # BGR light blue / white
    light = rng.uniform(0.85, 1.05)
    colour = tuple(float(c * light) for c in colour)
    out = crop.copy()
    cv2.fillPoly(out, [_fixed(outline)], colour, cv2.LINE_AA, SHIFT)
    shade = tuple(0.8 * c for c in colour)
    for k in (0.3, 0.5, 0.7):  # pleats
        y = top + k * (chin - top)
        cv2.line(out, _fixed((cx - 0.8 * half, y)), _fixed((cx + 0.8 * half, y)), shade, 1, cv2.LINE_AA, SHIFT)
    for side in (-1, 1):  # ear loops
        start = (cx + side * half, mouth[1] - 0.1 * d)
        cv2.line(out, _fixed(start), _fixed((cx + side * 1.45 * d, nose[1] - 0.3 * d)), colour, 1, cv2.LINE_AA, SHIFT)
    return out


def sunglasses(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark elliptical lenses over both eyes and a bridge between them."""
    p = _points(crop)
    d = EYE_DISTANCE * crop.shape[1]
    axes = _fixed((0.4 * d * rng.uniform(0.9, 1.1), 0.28 * d * rng.uniform(0.9, 1.1)))
    colour = (float(rng.uniform(10, 40)),) * 3
    out = crop.copy()
    for eye in (p["right_eye"], p["left_eye"]):
        cv2.ellipse(out, _fixed(eye), tuple(axes), 0, 0, 360, colour, -1, cv2.LINE_AA, SHIFT)
    thickness = max(1, round(0.04 * d))
    cv2.line(out, _fixed(p["right_eye"]), _fixed(p["left_eye"]), colour, thickness, cv2.LINE_AA, SHIFT)
    return out


def low_light(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark exposure (gamma 1.6-2.2, gain 0.35-0.6) with sensor noise (Gaussian, sigma 4-7)."""
    linear = (crop.astype(np.float32) / 255) ** rng.uniform(1.6, 2.2) * rng.uniform(0.35, 0.6) * 255
    noisy = linear + rng.normal(0, rng.uniform(4, 7), crop.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def motion_blur(crop: np.ndarray, rng: np.random.Generator, fraction: float = 0.11) -> np.ndarray:
    """Linear motion blur over `fraction` of the crop width (a walking face at about 1/100 s), any direction."""
    length = max(3, round(fraction * crop.shape[1]))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return cv2.filter2D(crop, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE)


def defocus_blur(crop: np.ndarray, rng: np.random.Generator, fraction: float = 0.04) -> np.ndarray:
    """Defocus: a disk of radius `fraction` of the crop width (about 2.5 px at 64 px)."""
    radius = fraction * crop.shape[1] * rng.uniform(0.9, 1.1)
    r = int(np.ceil(radius))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    kernel = np.clip(radius + 0.5 - np.hypot(x, y), 0, 1).astype(np.float32)
    return cv2.filter2D(crop, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE)


def jpeg(crop: np.ndarray, rng: np.random.Generator, quality: int = 20) -> np.ndarray:
    """JPEG at `quality`, at the crop's own resolution (a face this size in a compressed frame)."""
    _, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def small_face(crop: np.ndarray, rng: np.random.Generator, pixels: int = 32) -> np.ndarray:
    """The face seen `pixels` wide, upsampled to the crop size (as `conversion.evaluate` does)."""
    return low_resolution(crop, pixels)


def turned_head(crop: np.ndarray, rng: np.random.Generator, yaw: float = 30.0) -> np.ndarray:
    """Profile-ish approximation: the frontal face mapped onto a vertical cylinder (radius 0.5 of
    the crop) and turned by `yaw` degrees, either way: one half is squeezed, the other stretched.
    A frontal photo warped, not a real turned head: no self-occlusion of the far cheek, the nose
    keeps its frontal shape, and the keypoints stay where alignment put them."""
    size = crop.shape[1]
    radius = 0.5 * size
    angle = np.radians(yaw) * (1 if rng.random() < 0.5 else -1)
    u = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) / radius  # output column, on the cylinder
    phi = np.arcsin(np.clip(u, -1, 1)) - angle
    # Beyond the turned face's silhouette the crop's own background and hair stay where they were.
    source_x = np.where(np.abs(phi) < np.pi / 2, np.sin(phi) * radius + size / 2 - 0.5, u * radius + size / 2 - 0.5)
    map_x = np.repeat(source_x[None].astype(np.float32), crop.shape[0], axis=0)
    map_y = np.repeat(np.arange(crop.shape[0], dtype=np.float32)[:, None], size, axis=1)
    return cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def jitter_keypoints(
    keypoints: np.ndarray, rng: np.random.Generator, shift: float = 0.05, angle: float = 10.0, scale: float = 0.05
) -> np.ndarray:
    """Keypoints moved together as a detector's error would move them: rotated by up to ±`angle`
    degrees, scaled by up to ±`scale` and shifted by up to ±`shift` eye distances per axis."""
    eyes = keypoints[[RIGHT_EYE, LEFT_EYE]].astype(np.float64)
    d = float(np.hypot(*(eyes[1] - eyes[0])))
    centre = keypoints[list(ALIGN_KEYPOINTS)].astype(np.float64).mean(0)
    turn, zoom = float(rng.uniform(-angle, angle)), float(np.exp(rng.uniform(-scale, scale)))
    matrix = cv2.getRotationMatrix2D(tuple(centre), turn, zoom)
    moved = keypoints @ matrix[:, :2].T + matrix[:, 2] + rng.uniform(-shift, shift, 2) * d
    return moved.astype(keypoints.dtype)


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
        p_female, age = [], []
        for i, (image, kp) in enumerate(zip(images, keypoints, strict=True)):
            rng = np.random.default_rng([seed, c, i])
            if name == JITTER:
                kp = jitter_keypoints(kp, rng)
            crop = align_face(image, kp, model.size)
            if corruption is not None:
                crop = corruption(crop, rng)
            estimate = model(crop)
            p_female.append(estimate.p_female)
            age.append(estimate.age)
        female, age_array = np.array(p_female) >= 0.5, np.array(age)
        accuracy = 100 * float((female == true_female).mean())
        mae = float(np.abs(age_array - true_age).mean())
        band = 100 * float((age_band_index(age_array) == age_band_index(true_age)).mean())
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
        f" (truth {100 * true_female.mean():.1f} %); bias: mean signed age error; band: age-band accuracy"
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
