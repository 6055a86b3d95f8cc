"""A generated COCO-format detection set: coloured shapes on textured backgrounds, written as PNG + json files.

    python -m mdistiller.dataset.shapes --root data                 # data/shapes/, the default set
    python -m mdistiller.dataset.shapes --root data --train 32 --val 8 --size 64 --seed 1

``DATASET.TYPE shapes`` reads ``DATASET.ROOT/shapes`` and writes the default set there first when it is missing
(:data:`DEFAULT_SET`), so the detection configs of ``configs/shapes`` run on any machine without a download.
Layout (a COCO-format set, read by :mod:`mdistiller.dataset.coco`)::

    shapes/train/000000.png ...    shapes/annotations/instances_train.json
    shapes/val/000000.png ...      shapes/annotations/instances_val.json

Each image (``size`` × ``size``, RGB) has a background texture — a smooth random colour field plus stripes of
random angle, period and contrast — and 1 to ``max_objects`` filled shapes of :data:`CATEGORIES` (category ids with
gaps, as COCO's), each in one random saturated colour, 10–45 % of the side, placed so that two boxes intersect by at
most 20 % of the smaller one (no shape hides another). A box is the shape's pixel extent ``[x, y, w, h]`` (COCO's
bbox), its ``area`` the count of the shape's pixels. Everything follows from ``seed``: the same arguments write the
same files.
"""
import argparse
import json
import math
import os

import numpy as np

# category id -> name; the ids have gaps (as COCO's 1..90 for 80 classes) so the class mapping is exercised.
CATEGORIES = {1: "circle", 3: "square", 6: "triangle", 9: "cross"}
MAX_OVERLAP = 0.2  # of two boxes, the intersection over the smaller one's area, at most (no shape hides another)
DEFAULT_SET = dict(num_train=320, num_val=80, size=96, max_objects=4, seed=0)
SPLITS = ("train", "val")


def _texture(rng, size):
    """A (size, size, 3) float background in [0, 255]: a bilinearly upsampled 4x4 colour field plus stripes."""
    from PIL import Image

    coarse = Image.fromarray(rng.uniform(40, 215, size=(4, 4, 3)).astype(np.uint8))
    field = np.asarray(coarse.resize((size, size), Image.BILINEAR), dtype=np.float64)
    angle, period, contrast = rng.uniform(0, math.pi), rng.uniform(4, 16), rng.uniform(5, 35)
    y, x = np.mgrid[0:size, 0:size]
    stripes = contrast * np.sin(2 * math.pi * (x * math.cos(angle) + y * math.sin(angle)) / period)
    return np.clip(field + stripes[:, :, None], 0, 255)


def _mask(kind, size, cx, cy, r):
    """Boolean (size, size) mask of a shape centred at (cx, cy) with half-extent r."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = x - cx, y - cy
    if kind == "circle":
        return dx * dx + dy * dy <= r * r
    if kind == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if kind == "triangle":  # apex up, base at cy + r
        return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)
    arm = r / 3  # cross
    return ((np.abs(dx) <= r) & (np.abs(dy) <= arm)) | ((np.abs(dy) <= r) & (np.abs(dx) <= arm))


def _overlap(a, b):
    """Intersection of two ``[x, y, w, h]`` boxes over the smaller one's area."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / min(a[2] * a[3], b[2] * b[3])


def _image(rng, size, max_objects):
    """``(uint8 (size, size, 3) pixels, [(category id, [x, y, w, h], area), ...])``."""
    pixels = _texture(rng, size)
    objects = []
    ids = sorted(CATEGORIES)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            category = ids[int(rng.integers(len(ids)))]
            r = rng.uniform(0.05, 0.225) * size
            cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
            mask = _mask(CATEGORIES[category], size, cx, cy, r)
            ys, xs = np.nonzero(mask)
            if len(xs) < 4:
                continue
            box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            if all(_overlap(box, other[1]) <= MAX_OVERLAP for other in objects):
                hue = rng.uniform(0, 6)
                channel = np.clip(np.abs((hue - np.array([3.0, 1.0, 5.0])) % 6 - 3) - 1, 0, 1)  # saturated colour
                pixels[mask] = 20 + 220 * channel
                objects.append((category, box, int(mask.sum())))
                break
    return pixels.round().astype(np.uint8), objects


def write_shapes(folder, num_train=DEFAULT_SET["num_train"], num_val=DEFAULT_SET["num_val"],
                 size=DEFAULT_SET["size"], max_objects=DEFAULT_SET["max_objects"], seed=DEFAULT_SET["seed"]):
    """Write the set into ``folder`` (see the module docstring); returns ``{split: annotation file}``.

    The json files are written last, each atomically, so a set whose two json files exist is complete.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    os.makedirs(os.path.join(folder, "annotations"), exist_ok=True)
    for split, count in zip(SPLITS, (num_train, num_val)):
        os.makedirs(os.path.join(folder, split), exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            pixels, objects = _image(rng, size, max_objects)
            name = "{:06d}.png".format(i)
            Image.fromarray(pixels).save(os.path.join(folder, split, name))
            images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
            for category, box, area in objects:
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": category,
                                    "bbox": box, "area": area, "iscrowd": 0})
        data = {"info": {"description": "mdistiller generated shapes", "seed": seed, "size": size,
                         "max_objects": max_objects, "num_images": count},
                "images": images, "annotations": annotations,
                "categories": [{"id": c, "name": n, "supercategory": "shape"} for c, n in sorted(CATEGORIES.items())]}
        path = os.path.join(folder, "annotations", "instances_{}.json".format(split))
        with open(path + ".tmp", "w") as f:
            json.dump(data, f)
        os.replace(path + ".tmp", path)
        written[split] = path
    return written


# The set's COCO-format paths relative to DATASET.ROOT: keywords of mdistiller.dataset.coco.build_coco_format.
LAYOUT = dict(train_images="shapes/train", train_annotations="shapes/annotations/instances_train.json",
              val_images="shapes/val", val_annotations="shapes/annotations/instances_val.json")


def build_shapes(root, download, **options):
    """``ROOT/shapes``, written with :data:`DEFAULT_SET` first when its annotation files are missing."""
    from .coco import build_coco_format

    if not all(os.path.isfile(os.path.join(root, LAYOUT[k])) for k in ("train_annotations", "val_annotations")):
        folder = os.path.join(root, "shapes")
        print("writing the generated shapes set to {}".format(os.path.abspath(folder)))
        write_shapes(folder)
    return build_coco_format(root, **dict(options, **LAYOUT))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write the generated COCO-format shapes set (PNG + json).")
    parser.add_argument("--root", default="data", help="DATASET.ROOT: the set goes to ROOT/shapes")
    parser.add_argument("--train", type=int, default=DEFAULT_SET["num_train"], help="training images")
    parser.add_argument("--val", type=int, default=DEFAULT_SET["num_val"], help="validation images")
    parser.add_argument("--size", type=int, default=DEFAULT_SET["size"], help="side of the square images (px)")
    parser.add_argument("--max-objects", type=int, default=DEFAULT_SET["max_objects"], help="shapes per image, at most")
    parser.add_argument("--seed", type=int, default=DEFAULT_SET["seed"])
    args = parser.parse_args(argv)
    written = write_shapes(os.path.join(args.root, "shapes"), args.train, args.val, args.size, args.max_objects,
                           args.seed)
    for split, path in written.items():
        print("{}: {}".format(split, path))
    return written


if __name__ == "__main__":
    main()
