"""Evaluate the float32 and int8 models side by side on the validation split.

    python -m conversion.evaluate --float RUN/age_gender_float32.tflite \
        --int8 models/tflite/age_gender_int8.tflite [--json metrics.json]

Prints gender accuracy, age MAE and age-band accuracy; accuracy by age band and by race; the
same at reduced face resolution (32 and 48 px faces upsampled, as CCTV sees them); on the
held-out part of each real photo set that `python -m conversion.photos NAME` has prepared (LFW's
held-out people, FairFace's val photos), gender of women and men and, with ages, the share in our
age band, and the same weighted as fairface-dev is built (`balanced`), and both by how far the
face is turned aside (`head_turn`) and by race group where the set has one; how far the mix of age
bands read from the estimates sits from the true mix, counting likeliest bands or summing band
probabilities as the hourly record does (`age_mix_error`); on real sets with ages, the mean age read
per true band beside the true mean (`age_read_by_band`); on sets with ages, how often issue 21's
bars would be met on 270-photo draws built like fairface-dev, at the default margin, at the
margin that meets the gender bars most often, and at the one to set (`bar_odds`,
`odds_margin`); and per-face latency on one thread.
Models run through the product's own `edge.classify.AgeGenderModel`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from conversion.corrupt import low_resolution
from conversion.data import AGE_BANDS, DEFAULT_CACHE, RACES, Prepared, age_band_index, age_mix_error
from conversion.photos import AGE_BANDS as FAIRFACE_BANDS
from conversion.photos import DEFAULT_DATA, Photos
from conversion.train import aligned_crops, head_turn
from edge.vision.classify import AgeGenderModel
from edge.vision.config import VisionConfig
from edge.vision.runtime import ModelError

FAIRFACE_BAND_STARTS = np.unique([first for first, _ in FAIRFACE_BANDS.values()])

RESOLUTIONS = (None, 48, 32)
# `vision.gender_margin` values whose judged share and accuracy are shown on the real photos,
# the default among them.
MARGINS = tuple(sorted({0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, VisionConfig.gender_margin}))
# Margins searched for the default, in steps the config's help can quote.
MARGIN_STEPS = np.round(np.arange(0.0, 0.3001, 0.005), 3)
RIGHT_OF_JUDGED = 0.90
# Issue 21's other bars on fairface-dev: the share of faces judged, children 0-9 right of their
# judged, the most women and men may differ, and ages in our band.
JUDGED_BAR, CHILDREN_BAR, WOMEN_MEN_GAP, BAND_BAR = 0.85, 0.75, 0.05, 0.60
# fairface-dev holds this many women and as many men of each FairFace age band (270 photos).
DEV_PER_CELL = 15
# `odds_margin`: margins whose odds of meeting the gender bars are this close to the best count as
# as good (two margins' odds on 2,000 draws differ by a point or so by chance).
ODDS_SLACK = 0.01
# The report's cell for `bar_odds`: every bar, the four gender bars (and each alone), the age bar.
ODDS_CELL = (
    "{margin:.3f}: {all:.0%}; {gender:.0%} ({judged:.0%}/{right_of_judged:.0%}/{children_0_9:.0%}/{women_men:.0%});"
    " {our_age_band:.0%}"
)
# Real photos are also scored by how far the face is turned (`head_turn`, in eye distances):
# frontal, then each step further aside.
TURN_EDGES = (0.1, 0.2, 0.3)


def predict(
    model: AgeGenderModel, crops: np.ndarray, desc: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """p(female), mean age, the age band (index into AGE_BANDS, as the product picks it) and the
    probability of each age band, of each crop."""
    estimates = [model(crop) for crop in tqdm(crops, desc=desc, leave=False, unit="face", disable=None)]
    p_female = np.array([e.p_female for e in estimates])
    age = np.array([e.age for e in estimates])
    masses = np.array([e.bands for e in estimates])
    return p_female, age, np.array([AGE_BANDS.index(e.age_band) for e in estimates], np.int64), masses


def figures(
    p_female: np.ndarray, age: np.ndarray, band: np.ndarray, true_female: np.ndarray, true_age: np.ndarray
) -> dict:
    correct = (p_female >= 0.5) == (true_female == 1)
    error = np.abs(age - true_age)
    return {
        "gender_accuracy": float(correct.mean()),
        "age_mae": float(error.mean()),
        "age_band_accuracy": float((band == age_band_index(true_age)).mean()),
        "faces": len(correct),
    }


def dev_cells(first: np.ndarray, female: np.ndarray) -> np.ndarray:
    """Each photo's cell of fairface-dev's design: its FairFace age band (an age in years counts in
    the band holding it) x gender. Dev holds DEV_PER_CELL photos of every cell."""
    return np.searchsorted(FAIRFACE_BAND_STARTS, first, side="right") * 2 + np.asarray(female)


def balanced_weights(first: np.ndarray, female: np.ndarray) -> np.ndarray:
    """Per-photo weights, summing to 1, under which every cell of fairface-dev's design
    (`dev_cells`) weighs alike."""
    _, cell, count = np.unique(dev_cells(first, female), return_inverse=True, return_counts=True)
    weights = 1.0 / count[cell]
    return weights / weights.sum()


def balanced(p_female: np.ndarray, band: np.ndarray, true_female: np.ndarray, first: np.ndarray, margin: float) -> dict:
    """Figures on photos with age bands weighted as `balanced_weights`: fairface-dev's mix, from
    thousands of held-out photos, to choose models on without touching the measurement set.
    Gender at `margin` as the product judges it."""
    weight = balanced_weights(first, true_female)
    judged = np.abs(p_female - 0.5) >= margin
    right = (p_female >= 0.5) == (true_female == 1)

    def share(hit: np.ndarray, among: np.ndarray) -> float:
        return float((weight * hit)[among].sum() / weight[among].sum())

    return {
        "margin": margin,
        "judged": share(judged, np.ones_like(judged)),
        "right_of_judged": share(right, judged),
        "women": share(right, judged & (true_female == 1)),
        "men": share(right, judged & (true_female == 0)),
        "children_0_9": share(right, judged & (first < 10)),
        "our_age_band": share(band == age_band_index(first), np.ones_like(judged)),
    }


def turn_label(i: int) -> str:
    edges = ("0", *(f"{e:g}" for e in TURN_EDGES), "")
    return f"head turn {edges[i]}-{edges[i + 1]}" if edges[i + 1] else f"head turn {edges[i]}+"


def by_group(right: np.ndarray, band_right: np.ndarray | None, group: np.ndarray, labels: list[str]) -> dict:
    """Gender (and age band) accuracy of the faces in each group (`group` indexes `labels`)."""
    out = {}
    for i, label in enumerate(labels):
        mine = group == i
        cell: dict = {"faces": int(mine.sum()), "gender_accuracy": float(right[mine].mean()) if mine.any() else None}
        if band_right is not None:
            cell["our_age_band"] = float(band_right[mine].mean()) if mine.any() else None
        out[label] = cell
    return out


def age_read_by_band(age: np.ndarray, middle: np.ndarray) -> dict[str, list[float] | None]:
    """Per true band of ours, the mean age the model reads and the mean true age (a band's middle
    where the set gives bands): where estimates lean towards the training set's common ages."""
    true_band = age_band_index(middle)
    return {
        name: [float(age[mine].mean()), float(middle[mine].mean())] if (mine := true_band == i).any() else None
        for i, name in enumerate(AGE_BANDS)
    }


def by_turn(right: np.ndarray, band_right: np.ndarray | None, turn: np.ndarray) -> dict:
    """Faces grouped by `head_turn`: where real photos fail."""
    group = np.searchsorted(TURN_EDGES, turn, side="right")
    return by_group(right, band_right, group, [turn_label(i) for i in range(len(TURN_EDGES) + 1)])


def gender_margin(
    p_female: np.ndarray, female: np.ndarray, first: np.ndarray, right: float = RIGHT_OF_JUDGED
) -> float | None:
    """The smallest margin around p = 0.5 at which at least `right` of the faces judged are right,
    weighted as `balanced`; None if no margin up to 0.3 gets there. The rule that sets
    `vision.gender_margin`'s default from FairFace's val photos (issue 21's bar)."""
    for margin in MARGIN_STEPS:
        if balanced(p_female, np.zeros_like(first), female, first, float(margin))["right_of_judged"] >= right:
            return float(margin)
    return None


def bar_odds(
    p_female: np.ndarray,
    female: np.ndarray,
    first: np.ndarray,
    margins: np.ndarray,
    band_right: np.ndarray | None = None,
    draws: int = 2000,
    seed: int = 0,
) -> dict[float, dict[str, float]]:
    """Per margin, the share of `draws` random sets built like fairface-dev from these photos
    (DEV_PER_CELL women and as many men per FairFace age band, drawn with replacement) on which
    each of issue 21's gender bars holds, and all four together (`gender`); with `band_right` (is
    each photo's likeliest band ours?), also the age bar (`our_age_band`, the same at every
    margin) and every bar at once (`all`). A bar met on thousands of photos is missed on 270 of
    them about as often as not when the model sits at it; this says how likely a model is to meet
    the bars on a set like dev that it has not seen, which is what a candidate or a margin should
    be chosen for."""
    cell = dev_cells(first, female)
    members = [np.flatnonzero(cell == c) for c in np.unique(cell)]
    rng = np.random.default_rng(seed)
    drawn = np.stack([np.concatenate([rng.choice(m, DEV_PER_CELL) for m in members]) for _ in range(draws)])
    right, sure = ((p_female >= 0.5) == (female == 1))[drawn], np.abs(p_female - 0.5)[drawn]
    every, child, woman = np.ones_like(right), (first < 10)[drawn], (female == 1)[drawn]
    man = ~woman
    # The age bar does not depend on the margin.
    band_met = None if band_right is None else band_right[drawn].mean(1) >= BAND_BAR

    def right_among(judged: np.ndarray, among: np.ndarray) -> np.ndarray:
        # A draw with none of `among` judged fails the bar: nothing was shown to be right.
        n = (judged & among).sum(1)
        return np.where(n > 0, (judged & among & right).sum(1) / np.maximum(n, 1), -1.0)

    out = {}
    for margin in margins:
        judged = sure >= margin
        bars = {
            "judged": judged.mean(1) >= JUDGED_BAR,
            "right_of_judged": right_among(judged, every) >= RIGHT_OF_JUDGED,
            "children_0_9": right_among(judged, child) >= CHILDREN_BAR,
            "women_men": np.abs(right_among(judged, woman) - right_among(judged, man)) <= WOMEN_MEN_GAP,
        }
        bars["gender"] = np.logical_and.reduce(list(bars.values()))
        if band_met is not None:
            bars["our_age_band"] = band_met
            bars["all"] = bars["gender"] & band_met
        out[float(margin)] = {k: float(v.mean()) for k, v in bars.items()}
    return out


def odds_margin(odds: dict[float, dict[str, float]], slack: float = ODDS_SLACK) -> float:
    """The margin to set from `bar_odds`: the smallest whose odds of meeting the four gender bars
    are within `slack` of the best (0: the best itself). The best alone is picked from the same draws, so it leans to
    whichever margin they happen to favour, and a larger margin judges fewer visitors; among
    margins that do about as well, the one judging most is the owner's."""
    best = max(cell["gender"] for cell in odds.values())
    return min(margin for margin, cell in odds.items() if cell["gender"] >= best - slack - 1e-9)


def latency_ms(model: AgeGenderModel, crop: np.ndarray, repeats: int = 300) -> float:
    for _ in range(20):
        model(crop)
    start = time.perf_counter()
    for _ in range(repeats):
        model(crop)
    return 1000 * (time.perf_counter() - start) / repeats


def evaluate(models: dict[str, Path], flip: bool, cache: Path = DEFAULT_CACHE) -> dict:
    # Every model loads before any data, so a file that is no model stops the command at once,
    # not after the models before it have been evaluated.
    loaded = {name: AgeGenderModel(path, num_threads=1, flip=flip) for name, path in models.items()}
    data = Prepared.load(cache)
    index = data.split(True)
    true_female, true_age, race = data.female[index], data.age[index].astype(np.float64), data.race[index]
    results: dict = {"validation_faces": len(index), "flip": flip, "models": {}}
    crops_by_size: dict[int, np.ndarray] = {}
    real = {}
    for set_name in DEFAULT_DATA:
        if Photos.prepared(set_name, cache):
            photos = Photos.load(set_name, cache)
            real[set_name] = (photos, photos.split(True))
    real_crops: dict[tuple[str, int], np.ndarray] = {}
    for name, model in loaded.items():
        path = models[name]
        if model.size not in crops_by_size:
            crops_by_size[model.size] = aligned_crops(data, index, model.size)
        crops = crops_by_size[model.size]
        out: dict = {"file": str(path), "size_bytes": path.stat().st_size}
        for pixels in RESOLUTIONS:
            inputs = crops if pixels is None else np.stack([low_resolution(c, pixels) for c in crops])
            label = "full" if pixels is None else f"{pixels}px"
            p_female, age, band, masses = predict(model, inputs, f"{name} {label}")
            out[label] = figures(p_female, age, band, true_female, true_age)
            if pixels is None:
                out["age_mix"] = age_mix_error(masses, age_band_index(true_age))
                groups = {"by_age_band": (age_band_index(true_age), AGE_BANDS), "by_race": (race, RACES)}
                for group, (member, names) in groups.items():
                    out[group] = {
                        key: figures(*(v[member == i] for v in (p_female, age, band, true_female, true_age)))
                        for i, key in enumerate(names)
                    }
        for set_name, (photos, held_out) in real.items():
            key = (set_name, model.size)
            if key not in real_crops:
                real_crops[key] = aligned_crops(photos, held_out, model.size)
            p_female, age, band, masses = predict(model, real_crops[key], f"{name} {set_name}")
            truth = photos.female[held_out]
            right = (p_female >= 0.5) == (truth == 1)
            out[set_name] = {
                "gender_accuracy": float(right.mean()),
                "women": float(right[truth == 1].mean()),
                "men": float(right[truth == 0].mean()),
                "faces": len(right),
            }
            first = photos.age_first[held_out]
            band_right = (band == age_band_index(first)) if (first >= 0).all() else None
            out[set_name]["by_turn"] = by_turn(right, band_right, head_turn(photos.keypoints[held_out]))
            photo_race = photos.race[held_out]
            if (photo_race >= 0).all():
                out[set_name]["by_race"] = by_group(right, band_right, photo_race, list(RACES))
            if band_right is not None:
                out[set_name]["our_age_band"] = float(band_right.mean())
                out[set_name]["age_mix"] = age_mix_error(masses, age_band_index(first))
                middle = (first + photos.age_last[held_out]) / 2
                out[set_name]["age_read"] = age_read_by_band(age, middle)
                out[set_name]["balanced"] = balanced(p_female, band, truth, first, VisionConfig.gender_margin)
                rule = gender_margin(p_female, truth, first)
                out[set_name]["rule"] = None if rule is None else balanced(p_female, band, truth, first, rule)
                odds = bar_odds(p_female, truth, first, MARGIN_STEPS, band_right)
                default = min(odds, key=lambda m: abs(m - VisionConfig.gender_margin))
                out[set_name]["bar_odds"] = {
                    which: {"margin": m, **odds[m]}
                    for which, m in (
                        ("default", default),
                        ("best", odds_margin(odds, 0.0)),
                        ("rule", odds_margin(odds)),
                    )
                }
            # What `vision.gender_margin` would give here: the share judged, and right of those.
            sure = np.abs(p_female - 0.5)[None] >= np.array(MARGINS)[:, None]
            out[set_name]["margins"] = {
                str(m): [float(judged.mean()), float(right[judged].mean())]
                for m, judged in zip(MARGINS, sure, strict=True)
            }
        out["latency_ms_per_face"] = latency_ms(model, crops[0])
        results["models"][name] = out
    return results


def report(results: dict) -> str:
    names = list(results["models"])
    models = [results["models"][n] for n in names]
    flip = "with test-time flip (2 inferences per face)" if results["flip"] else "single inference per face"
    lines = [f"validation split: {results['validation_faces']} faces (sha1(file name)[0] % 5 == 0), {flip}"]
    header = f"{'':38}" + "".join(f"{n:>22}" for n in names)
    lines.append(header)

    def row(label: str, values: list[str]) -> None:
        lines.append(f"{label:38}" + "".join(f"{v:>22}" for v in values))

    def mix_row(prefix: str, cells: list[dict]) -> None:
        form = "{likeliest:.3f} / {summed:.3f}"
        row(f"{prefix}age mix off: likeliest / summed", [form.format(**c["age_mix"]) for c in cells])

    row("model file", [f"{m['size_bytes'] / 1024:.0f} KiB" for m in models])
    row("latency per face (1 thread)", [f"{m['latency_ms_per_face']:.2f} ms" for m in models])
    for label in ("full", "48px", "32px"):
        row(f"[{label}] gender accuracy", [f"{100 * m[label]['gender_accuracy']:.2f} %" for m in models])
        row(f"[{label}] age MAE", [f"{m[label]['age_mae']:.2f} y" for m in models])
        row(f"[{label}] age-band accuracy", [f"{100 * m[label]['age_band_accuracy']:.2f} %" for m in models])
        if label == "full":
            mix_row("[full] ", models)
    for set_name in DEFAULT_DATA:
        if all(set_name in m for m in models):
            first = models[0][set_name]
            row(
                f"[{set_name}, {first['faces']} held out] gender",
                [f"{100 * m[set_name]['gender_accuracy']:.2f} %" for m in models],
            )
            row(
                f"[{set_name}] women / men",
                [f"{100 * m[set_name]['women']:.1f} / {100 * m[set_name]['men']:.1f} %" for m in models],
            )
            if "our_age_band" in first:
                row(f"[{set_name}] age in our band", [f"{100 * m[set_name]['our_age_band']:.1f} %" for m in models])
                mix_row(f"[{set_name}] ", [m[set_name] for m in models])
                row(f"[{set_name}] age read (true), per band", [""] * len(models))
                for band in first["age_read"]:
                    row(
                        f"[{set_name}]   {band}",
                        [
                            "-" if (c := m[set_name]["age_read"][band]) is None else f"{c[0]:.1f} y ({c[1]:.1f})"
                            for m in models
                        ],
                    )
            if "balanced" in first:
                pairs = (
                    (f"margin {first['balanced']['margin']}", "judged", "right_of_judged", "{:.1f} % judged, {:.1f} %"),
                    ("women / men", "women", "men", "{:.1f} / {:.1f} %"),
                    ("children, band", "children_0_9", "our_age_band", "{:.1f} %, {:.1f} %"),
                )
                cells = [m[set_name]["balanced"] for m in models]
                for label, one, other, form in pairs:
                    row(f"[{set_name}] balanced {label}", [form.format(100 * c[one], 100 * c[other]) for c in cells])
                row(
                    f"[{set_name}] {100 * RIGHT_OF_JUDGED:.0f} % rule's margin",
                    [
                        "none up to 0.3"
                        if (c := m[set_name]["rule"]) is None
                        else f"{c['margin']:.3f}: {100 * c['judged']:.1f} %, {100 * c['right_of_judged']:.1f} %"
                        for m in models
                    ],
                )
                row(
                    f"[{set_name}] bars met, dev-size draws",
                    ["all; gender (judged/right/child/w-m); band"] * len(models),
                )
                for which in ("default", "best", "rule"):
                    row(
                        f"[{set_name}]   {which} margin",
                        [ODDS_CELL.format(**m[set_name]["bar_odds"][which]) for m in models],
                    )
            has_band = "our_age_band" in first
            for group in ("by_turn", "by_race"):
                if group not in first:
                    continue
                heading = "gender / our band" if has_band else "gender"
                row(f"[{set_name}] {group.replace('_', ' ')}", [heading] * len(models))
                for key, cell in first[group].items():
                    row(
                        f"[{set_name}]   {key} ({cell['faces']})",
                        [
                            " / ".join(
                                "-" if (c := m[set_name][group][key].get(k)) is None else f"{100 * c:.1f} %"
                                for k in ("gender_accuracy", "our_age_band")
                                if k in cell
                            )
                            for m in models
                        ],
                    )
            for margin in first["margins"]:
                cells = [m[set_name]["margins"][margin] for m in models]
                row(f"[{set_name}] margin {margin}", [f"{100 * j:.1f} % judged, {100 * r:.1f} %" for j, r in cells])
    for group in ("by_age_band", "by_race"):
        lines.append(f"{group.replace('_', ' ')}: gender accuracy / age MAE (faces)")
        for key in models[0][group]:
            cells = [
                f"{100 * m[group][key]['gender_accuracy']:.1f} % / {m[group][key]['age_mae']:.1f} y" for m in models
            ]
            row(f"  {key} ({models[0][group][key]['faces']})", cells)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--float", dest="float_model", type=Path, help="float32 TFLite model")
    parser.add_argument("--int8", dest="int8_model", type=Path, required=True, help="int8 TFLite model")
    parser.add_argument("--no-flip", action="store_true", help="evaluate without test-time flip")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    models = {"int8": args.int8_model}
    if args.float_model:
        models = {"float32": args.float_model, **models}
    try:
        results = evaluate(models, flip=not args.no_flip, cache=args.cache)
    except (FileNotFoundError, ModelError) as error:  # a model or cache missing or unreadable
        parser.error(str(error))
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
