"""Age and gender of real people: the whole pipeline (detect → align → classify, as `aicctv
analyze` runs it on a still) on FairFace's balanced development photos
(../shared/datasets/fairface-dev, the protocol in its README).

    python -m bench.fairface [--data ../shared/datasets/fairface-dev] [--model FILE.tflite]
                             [--margin M] [--dump predictions.jsonl]
    python -m bench.fairface --load NEW.jsonl --margin M --against OLD.jsonl --against-margin M2

The labelled person is the face nearest the photo's centre. A photo whose face is not found, or
is found but not judged ("not sure", see `vision.gender_margin`), counts against "judged" and
never as right: "right of all" is over every photo, "right of judged" over the judged ones.
Age is scored in the FairFace band (0-2, 3-9, …, 70+: the band of the mean age) and in ours (0-9,
…, 60+: the likeliest band, as the product reports it), the latter also per true band with the
bands its misses were placed in; and the mix of ages, as an owner reads it from many visitors.
The bars' figures come with their 95 % interval: on 270 photos a figure is known to a few points.
Two models are compared photo by photo (`--against`): the photos only one of them gets right,
and the exact McNemar p-value of that split (under about 0.05: a difference 270 photos can see).

Measure with it; never train on these photos or pick a model by many trials on them (one photo is
0.4 points).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from conversion.data import age_mix_error
from edge.vision.config import VisionConfig
from edge.vision.runtime import ModelError
from edge.wire.contract import AGE_BANDS, judged_gender

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "fairface-dev"
FAIRFACE_BANDS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
OURS = {"0-2": "0-9", "3-9": "0-9", "60-69": "60+", "70+": "60+"}
CHILDREN = ("0-2", "3-9")


def fairface_band(age: float) -> str:
    for band in FAIRFACE_BANDS[:-1]:
        if age < int(band.split("-")[1]) + 1:
            return band
    return FAIRFACE_BANDS[-1]


@dataclass(frozen=True)
class Prediction:
    """The pipeline's answer for one labelled photo: None where no face was found or it was too
    small to judge."""

    file: str
    band: str  # the true FairFace band
    female: bool  # the true gender
    p_female: float | None
    age: float | None
    age_band: str | None  # ours, as the product decides it (the likeliest band)
    # The probability of each of our bands (predictions dumped before it was kept have none).
    bands: list[float] | None = None

    def gender(self, margin: float) -> str | None:
        """The gender, or None when not sure (p_female within `margin` of 0.5) or not judged."""
        return None if self.p_female is None else judged_gender(self.p_female, margin)


def predict(data: Path, config: VisionConfig, model: Path | None) -> list[Prediction]:
    import cv2

    from edge.vision.analyzer import Analyzer
    from edge.vision.classify import AgeGenderModel

    analyzer = Analyzer(config)
    if model is not None:
        analyzer.classifier = AgeGenderModel(model, num_threads=config.threads, flip=config.flip)
    labels = json.loads((data / "labels.json").read_text())
    predictions = []
    for n, label in enumerate(labels, 1):
        image = cv2.imread(str(data / "images" / label["filename"]), cv2.IMREAD_COLOR)
        if image is None:
            sys.exit(f"error: cannot read {data / 'images' / label['filename']}: is --data a fairface-dev folder?")
        centre = np.array(image.shape[1::-1], np.float32) / 2
        faces = analyzer.faces(image)
        estimate = None
        if faces:
            nearest = min(faces, key=lambda f: float(np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre)))
            estimate = nearest.estimate
        predictions.append(
            Prediction(
                label["filename"],
                label["age"],
                label["gender"] == "Female",
                None if estimate is None else estimate.p_female,
                None if estimate is None else estimate.age,
                None if estimate is None else estimate.age_band,
                None if estimate is None else list(estimate.bands),
            )
        )
        print(f"\r{n}/{len(labels)} photos", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return predictions


def _share(hits: Iterable[bool]) -> tuple[int, int]:
    hits = list(hits)
    return sum(hits), len(hits)


def _pct(pair: tuple[int, int]) -> str:
    right, total = pair
    return f"{100 * right / total:5.1f} % ({right}/{total})" if total else "    -"


# The bars' figures whose 95 % interval is printed: where a 270-photo set can place them.
INTERVALS = {
    "judged": "gender judged",
    "right of judged": "gender right of judged",
    "children": "children 0-9: gender right of judged",
    "our band": "age in our band",
}


def wilson(right: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a share `right` of `total` (95 % for z = 1.96): where the
    share of a far larger set of such photos plausibly lies."""
    share, z2 = right / total, z * z
    centre = (share + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(share * (1 - share) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(only_this: int, only_that: int) -> float:
    """The exact two-sided McNemar p-value: how likely two equally good models, each right on
    photos the other gets wrong, split those photos at least this unevenly."""
    n = only_this + only_that
    tail = sum(math.comb(n, k) for k in range(min(only_this, only_that) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired(
    this: list[Prediction], that: list[Prediction], margin: float, that_margin: float
) -> dict[str, tuple[int, int, int, int]]:
    """Two models' predictions for the same photos, compared photo by photo: for a right gender
    (judged and right; "right of judged" has a different denominator per model, so it cannot be
    paired) and our band, (right here, right there, right only here, right only there)."""
    if sorted(p.file for p in this) != sorted(p.file for p in that):
        raise ValueError("the two sets of predictions are not of the same photos")
    truth = {True: "female", False: "male"}
    theirs = {p.file: p for p in that}
    checks = {
        "right gender": lambda p, m: p.gender(m) == truth[p.female],
        "our band": lambda p, m: p.age_band == OURS.get(p.band, p.band),
    }
    out = {}
    for name, right in checks.items():
        pairs = [(right(p, margin), right(theirs[p.file], that_margin)) for p in this]
        out[name] = (
            sum(a for a, _ in pairs),
            sum(b for _, b in pairs),
            sum(a and not b for a, b in pairs),
            sum(b and not a for a, b in pairs),
        )
    return out


def figures(predictions: list[Prediction], margin: float) -> dict[str, tuple[int, int]]:
    """Each figure as (right, out of): gender of all photos and of the judged ones, per true
    gender, per FairFace band and for children; judged share; age in the FairFace band and ours."""
    truth = {True: "female", False: "male"}
    out: dict[str, tuple[int, int]] = {}
    found = [p for p in predictions if p.p_female is not None]
    judged = [p for p in predictions if p.gender(margin) is not None]
    out["faces found"] = (len(found), len(predictions))
    out["gender judged"] = (len(judged), len(predictions))
    out["gender right of judged"] = _share(p.gender(margin) == truth[p.female] for p in judged)
    out["gender right of all"] = _share(p.gender(margin) == truth[p.female] for p in predictions)
    for female in (True, False):
        mine = [p for p in judged if p.female == female]
        out[f"{truth[female]}: right of judged"] = _share(p.gender(margin) == truth[female] for p in mine)
        out[f"{truth[female]}: judged"] = (len(mine), sum(p.female == female for p in predictions))
    by_band = defaultdict(list)
    for p in judged:
        by_band[p.band, p.female].append(p.gender(margin) == truth[p.female])
    for band in FAIRFACE_BANDS:
        out[f"band {band}: gender right of judged"] = _share(by_band[band, True] + by_band[band, False])
        out[f"band {band}: women / men"] = _share(by_band[band, True])
        out[f"band {band}: men"] = _share(by_band[band, False])
    out["children 0-9: gender right of judged"] = _share(
        x for band in CHILDREN for female in (True, False) for x in by_band[band, female]
    )
    out["children 0-9: gender right of all"] = _share(
        p.gender(margin) == truth[p.female] for p in predictions if p.band in CHILDREN
    )
    out["age in the FairFace band"] = _share(p.age is not None and fairface_band(p.age) == p.band for p in predictions)
    out["age in our band"] = _share(p.age_band == OURS.get(p.band, p.band) for p in predictions)
    return out


def age_confusion(predictions: list[Prediction]) -> dict[str, Counter]:
    """For each of our bands, the bands its photos were reported in ("none": no face judged)."""
    confusion: dict[str, Counter] = {band: Counter() for band in AGE_BANDS}
    for p in predictions:
        confusion[OURS.get(p.band, p.band)][p.age_band or "none"] += 1
    return confusion


def age_mix(predictions: list[Prediction]) -> dict[str, float] | None:
    """How far the mix of our bands read from the photos with a face sits from their true mix,
    counting likeliest bands and summing band probabilities (`conversion.data.age_mix_error`)."""
    read = [p for p in predictions if p.bands is not None]
    if not read:
        return None
    truth = np.array([AGE_BANDS.index(OURS.get(p.band, p.band)) for p in read])
    return age_mix_error(np.array([p.bands for p in read]), truth)


def report(predictions: list[Prediction], margin: float) -> str:
    f = figures(predictions, margin)
    women, men = f["female: right of judged"], f["male: right of judged"]
    gap = 100 * (men[0] / max(men[1], 1) - women[0] / max(women[1], 1))
    lines = [f"fairface-dev: {len(predictions)} photos, gender margin {margin} (not sure within it of 0.5)"]
    for name, value in f.items():
        if name.endswith(": men"):
            lines[-1] += f"  / {_pct(value)}"
        else:
            lines.append(f"  {name:<40} {_pct(value)}")
    lines.append(f"  {'men minus women (right of judged)':<40} {gap:+5.1f} points")
    bounds = ", ".join(
        "{} {:.1f}–{:.1f} %".format(name, *(100 * b for b in wilson(*f[key])))
        for name, key in INTERVALS.items()
        if f[key][1]
    )
    lines.append(f"  95 % intervals (Wilson; one photo is 0.4 points): {bounds}")
    lines.append("  age in our band, per true band: right, and where the others were placed")
    for band, placed in age_confusion(predictions).items():
        others = ", ".join(f"{b} {n}" for b, n in placed.most_common() if b != band)
        lines.append(f"    {band:<6} {_pct((placed[band], placed.total())):<17} {others}")
    if (mix := age_mix(predictions)) is not None:
        lines.append(
            f"  age mix off (people read into a wrong band): {100 * mix['likeliest']:.1f} % counting likeliest "
            f"bands, {100 * mix['summed']:.1f} % summing band probabilities (the hourly record's way)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the fairface-dev folder")
    parser.add_argument("--model", type=Path, help="an age/gender int8 .tflite to measure instead of the shipped one")
    parser.add_argument(
        "--margin",
        type=float,
        default=VisionConfig.gender_margin,
        help="not sure when p_female is within this of 0.5 (default: vision.gender_margin)",
    )
    parser.add_argument("--dump", type=Path, help="write each photo's prediction here (JSON lines)")
    parser.add_argument("--load", type=Path, help="score predictions written by --dump instead of running the model")
    parser.add_argument(
        "--against",
        type=Path,
        metavar="DUMP",
        help="also compare, photo by photo, with another model's predictions written by --dump: whether "
        "270 photos can tell the two apart at all",
    )
    parser.add_argument(
        "--against-margin", type=float, metavar="M", help="that model's gender margin (default: --margin)"
    )
    args = parser.parse_args(argv)
    if args.against_margin is None:
        args.against_margin = args.margin
    if not (0.0 <= args.margin < 0.5 and 0.0 <= args.against_margin < 0.5):
        parser.error("--margin and --against-margin must be in [0, 0.5)")

    def load(path: Path) -> list[Prediction]:
        try:
            return [Prediction(**json.loads(line)) for line in path.read_text().splitlines() if line]
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as e:
            parser.error(f"cannot read predictions from {path} ({e}): pass a file written by --dump")

    if args.load:
        predictions = load(args.load)
    else:
        if not (args.data / "labels.json").is_file():
            parser.error(f"{args.data / 'labels.json'} not found: pass --data, the fairface-dev folder")
        try:
            predictions = predict(args.data, replace(VisionConfig(), gender_margin=0.0), args.model)
        except (FileNotFoundError, ModelError) as e:
            parser.error(str(e))
    if args.dump:
        args.dump.write_text("".join(json.dumps(p.__dict__) + "\n" for p in predictions))
    print(report(predictions, args.margin))
    if args.against:
        try:
            compared = paired(predictions, load(args.against), args.margin, args.against_margin)
        except ValueError as e:
            parser.error(f"--against {args.against}: {e}")
        print(f"against {args.against} (margin {args.against_margin}), photo by photo:")
        for name, (here, there, only_here, only_there) in compared.items():
            print(
                f"  {name:<13} {here} against {there} photos; right only here {only_here}, only there "
                f"{only_there}; exact McNemar p = {mcnemar(only_here, only_there):.2f}"
            )


if __name__ == "__main__":
    main()
