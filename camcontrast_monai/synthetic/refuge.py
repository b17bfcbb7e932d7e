"""Synthetic REFUGE-cls: fundus photographs whose glaucoma label follows from their cup-to-disc ratio.

Glaucoma enlarges the optic cup, and the vertical cup-to-disc ratio (CDR) is the sign graders read
first. Each photograph is a healthy eye from :func:`~camcontrast_monai.synthetic.fundus.generate_fundus`
(no diabetic lesions) with its CDR set: glaucomatous eyes draw it from [0.6, 0.8), the others from
[0.3, 0.6), and the label is ``CDR >= 0.6``. Near the threshold the two classes differ by a pixel or two
of cup at the sizes a CPU can train, so the task is learnable but not trivial, as REFUGE's is.

The layout is REFUGE's Training400, which :func:`~camcontrast_monai.data.read_refuge_glaucoma` reads::

    Training400/Glaucoma/g0001.jpg ...
    Training400/Non-Glaucoma/n0001.jpg ...
    manifest.json   parameters and each photograph's CDR and label
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from camcontrast_monai.synthetic.fundus import EYES, generate_fundus, save_image

__all__ = ["GLAUCOMA_CUP_TO_DISC", "write_refuge_dataset"]

GLAUCOMA_CUP_TO_DISC = 0.6
NORMAL_CUP_TO_DISC_RANGE = (0.3, GLAUCOMA_CUP_TO_DISC)
GLAUCOMA_CUP_TO_DISC_RANGE = (GLAUCOMA_CUP_TO_DISC, 0.8)
# apart from the fundus writer's streams (0-2), so REFUGE eyes are other eyes
_EYE_STREAM, _CUP_STREAM, _CLASS_STREAM = 10, 11, 12


def write_refuge_dataset(
    out_dir: str | Path, n: int, seed: int = 0, image_size: int = 256, glaucoma_ratio: float = 0.25
) -> dict:
    """Write ``n`` synthetic photographs in REFUGE's Training400 layout under ``out_dir``; return the manifest.

    Exactly ``round(n * glaucoma_ratio)`` photographs, a seeded choice, are glaucomatous. REFUGE itself has
    10 %; the default 25 % leaves enough positives in the test split of a small set for an F1 score.
    Photograph ``i``'s eye is drawn from the stream ``[seed, 10, i]`` and its CDR from ``[seed, 11, i]``,
    so neither depends on ``n``; which photographs are glaucomatous is drawn from ``[seed, 12, n]``.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    if not 0 < glaucoma_ratio < 1:
        raise ValueError(f"glaucoma_ratio must be between 0 and 1, got {glaucoma_ratio}")
    n_glaucoma = min(max(round(n * glaucoma_ratio), 1), n - 1)
    class_rng = np.random.Generator(np.random.PCG64([seed, _CLASS_STREAM, n]))
    glaucomatous = set(class_rng.choice(n, size=n_glaucoma, replace=False).tolist())
    root = Path(out_dir) / "Training400"
    records, counters = [], {"Glaucoma": 0, "Non-Glaucoma": 0}
    for index in range(n):
        folder = "Glaucoma" if index in glaucomatous else "Non-Glaucoma"
        low, high = GLAUCOMA_CUP_TO_DISC_RANGE if index in glaucomatous else NORMAL_CUP_TO_DISC_RANGE
        cup_to_disc = float(np.random.Generator(np.random.PCG64([seed, _CUP_STREAM, index])).uniform(low, high))
        sample = generate_fundus(
            np.random.Generator(np.random.PCG64([seed, _EYE_STREAM, index])), image_size,
            eye=EYES[index % 2], cup_to_disc=cup_to_disc,
        )  # fmt: skip
        counters[folder] += 1
        name = f"{folder[0].lower()}{counters[folder]:04d}.jpg"
        (root / folder).mkdir(parents=True, exist_ok=True)
        save_image(sample.image, root / folder / name, "jpg")
        label = int(sample.cup_to_disc >= GLAUCOMA_CUP_TO_DISC)
        records.append({"image": f"Training400/{folder}/{name}", "cup_to_disc": round(sample.cup_to_disc, 4), "label": label})
    manifest = {
        "generator": __name__,
        "parameters": {"n": n, "seed": seed, "image_size": image_size, "glaucoma_ratio": glaucoma_ratio},
        "class_counts": counters,
        "images": records,
    }
    (Path(out_dir) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
