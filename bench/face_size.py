"""How small a face can the age/gender model judge? Gender accuracy and age error by face width.

    python -m bench.face_size [--faces 800] [--data DIR]

Validation-split UTKFace faces are shrunk so that the detector's box around the face is W pixels
wide, then aligned and classified as the pipeline does (the crop upsampled to the model input).
The width is the detector's box, the one `vision.min_classify` is compared with: on these crops
the short-range BlazeFace box spans `BOX_SHARE` of the aligned crop (measured here first).
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from conversion.data import DEFAULT_DATA, load_faces, validation_rows
from edge.vision.align import align_face
from edge.vision.classify import AgeGenderModel
from edge.vision.detect import BlazeFace

WIDTHS = (12, 16, 20, 24, 28, 32, 40, 48, 64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=800)
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = validation_rows(args.data)
    rows = [rows[i] for i in rng.choice(len(rows), args.faces, replace=False)]
    faces = load_faces(rows, args.data)
    female = np.array([int(r["gender"]) == 1 for r in rows])
    age = np.array([float(r["age"]) for r in rows])
    detector = BlazeFace("short", 0.5, 1)
    model = AgeGenderModel()
    found = [detector(face) for face in faces]
    share = float(np.median([f.widths.max() / face.shape[1] for f, face in zip(found, faces, strict=True) if len(f)]))
    print(f"{len(faces)} validation faces; detector box = {share:.2f} of the aligned crop's width")
    print("box width   gender accuracy   age MAE")
    for width in WIDTHS:
        correct, errors = [], []
        for face, f, is_female, true_age in zip(faces, found, female, age, strict=True):
            if not len(f):
                continue
            scale = width / float(f.widths.max())
            small = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            estimate = model(align_face(small, f.keypoints[0] * scale, model.size, context=model.context))
            correct.append((estimate.p_female >= 0.5) == is_female)
            errors.append(abs(estimate.age - true_age))
        print(f"{width:>6} px   {np.mean(correct):14.1%}   {np.mean(errors):6.2f} y")


if __name__ == "__main__":
    main()
