"""Training data for fine-tuning: ``clean/train`` to fit, ``clean/validation`` to select -- never ``test``.

Only the files ``data/clean/train-*.parquet`` and ``data/clean/validation-*.parquet`` of a benchmark
folder are ever opened (:func:`split_files` builds the paths from the split name; nothing globs the
config folder), so the test split and the perturbed configs, which are built from it, cannot steer
training.

Every sample is prepared deterministically from ``(seed, epoch, sample index)``: box jitter,
albumentations augmentation (``--augment``) and calibrated-perturbation augmentation
(``--perturbation_augment``) draw from a generator seeded by those three numbers, so a sample is the same
whatever the number of processes, data-loader workers, or restarts.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from medfm_hf.records import decode_png, mask_to_bbox

logger = logging.getLogger(__name__)

TRAIN_SPLITS = ("train", "validation")


class FinetuneDataError(ValueError):
    """The training data cannot be used: the message says what was wrong and what to do."""


def split_files(dataset: str, split: str) -> list[str]:
    """The parquet files of ``clean/<split>``; only ``train`` and ``validation`` may be asked for."""
    if split not in TRAIN_SPLITS:
        raise FinetuneDataError(f"fine-tuning reads only clean/train and clean/validation, not {split!r}")
    files = sorted(glob.glob(os.path.join(dataset, "data", "clean", f"{split}-*.parquet")))
    if not files:
        raise FinetuneDataError(
            f"{dataset} has no clean/{split} split (data/clean/{split}-*.parquet); build the benchmark with "
            "`medfm-robust build` (the demo source has train and validation splits) or add the split"
        )
    return files


def resolve_dataset(dataset: str) -> str:
    """A local benchmark folder as is; a Hub dataset id is downloaded (train/validation files only)."""
    if os.path.isdir(dataset):
        return dataset
    if dataset.count("/") == 1 and not dataset.startswith((".", "/")):
        from huggingface_hub import snapshot_download

        try:
            return snapshot_download(dataset, repo_type="dataset",
                                     allow_patterns=[f"data/clean/{s}-*.parquet" for s in TRAIN_SPLITS])
        except Exception as exc:  # noqa: BLE001 - any hub error becomes one clear line
            raise FinetuneDataError(f"could not get dataset {dataset!r} from the Hub: {exc}") from exc
    raise FinetuneDataError(f"--dataset {dataset!r} is neither a benchmark folder nor a Hub dataset id (ORG/NAME)")


@dataclass
class Sample:
    image_id: str
    modality: str
    image: np.ndarray  # uint8/uint16, (H, W) or (H, W, 3)
    mask: np.ndarray  # bool (H, W)
    bbox: list[int]


def read_split(dataset: str, split: str) -> list[dict]:
    """Rows of ``clean/<split>`` that have a mask and a box (PNG bytes kept encoded), sorted by image id."""
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for f in split_files(dataset, split):
        table = pq.read_table(f, columns=["image_id", "modality", "task", "image", "mask", "bbox", "split"])
        rows += table.to_pylist()
    bad = [r["image_id"] for r in rows if r.get("split") not in (None, split)]
    if bad:
        raise FinetuneDataError(f"clean/{split} holds rows whose split field is not {split!r} (e.g. {bad[:3]})")
    keep = [r for r in rows if r.get("mask") is not None and r.get("bbox")]
    if not keep:
        raise FinetuneDataError(f"clean/{split} of {dataset} has no row with a mask and a box (segmentation)")
    keep.sort(key=lambda r: r["image_id"])
    return keep


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A stable 63-bit seed for one sample of one epoch."""
    d = hashlib.sha256(f"{seed}/{epoch}/{index}".encode()).digest()
    return int.from_bytes(d[:8], "little") >> 1


def _resize(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    if image.shape[:2] == (size, size):
        return image, mask
    img = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    m = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
    return img, m


def albumentations_pipeline():
    """Flips, a mild affine, brightness/contrast and a little noise, with masks and pascal_voc boxes."""
    import albumentations as A

    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.2),
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-10, 10), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
            A.GaussNoise(std_range=(0.01, 0.03), p=0.2),
        ],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.0),
        seed=0,
    )


class PerturbationAugment:
    """Our calibrated perturbations as training-time augmentation.

    For each (training image, perturbation) the calibrator finds once the strength of every chosen level
    (:func:`medfm_hf.calibration.calibrate`, the same SSIM bands as the benchmark); at training time a
    sample is perturbed with probability ``prob`` by a random applicable perturbation at a random chosen
    level, with a *fresh* random draw (new artifact geometry) at the calibrated strength. Geometric
    perturbations move the mask; the box is recomputed from it.
    """

    def __init__(self, names: list[str], levels: list[int], prob: float, seed: int) -> None:
        from medfm_hf.perturbations.registry import get_perturbation, list_perturbations

        self.levels = list(levels)
        self.prob = float(prob)
        self.seed = int(seed)
        self.all = names == ["all"]
        self.names = list_perturbations() if self.all else names
        for n in self.names:
            get_perturbation(n)  # unknown names fail now, with the list of valid ones
        self._strengths: dict[tuple[str, str], dict[int, float]] = {}

    def _strength(self, sample: Sample, name: str, level: int) -> float:
        from medfm_hf.calibration import calibrate

        key = (sample.image_id, name)
        if key not in self._strengths:
            res = calibrate(sample.image, name, image_id=sample.image_id, seed=self.seed, levels=tuple(self.levels),
                            mask=sample.mask)
            self._strengths[key] = {r.level: r.strength for r in res}
        return self._strengths[key][level]

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        from medfm_hf.perturbations.registry import get_perturbation

        if rng.random() >= self.prob:
            return sample
        options = [n for n in self.names if get_perturbation(n).applies_to(sample.modality, sample.image)]
        if not options or sample.image.min() == sample.image.max():
            return sample
        name = options[int(rng.integers(len(options)))]
        level = self.levels[int(rng.integers(len(self.levels)))]
        strength = self._strength(sample, name, level)
        image, mask = get_perturbation(name).apply(sample.image, strength, np.random.default_rng(rng.integers(2**62)),
                                                   mask=sample.mask)
        box = mask_to_bbox(mask) if mask is not None else None
        if box is None:  # moved out of view: keep the clean sample
            return sample
        return Sample(sample.image_id, sample.modality, image, mask.astype(bool), box)


class SegmentationSplit(torch.utils.data.Dataset):
    """One split as ``(image (3, S, S) float in [0, 1], box (4,), mask (S, S), index)``; map-style.

    ``item = (epoch, index)``; the sample is a pure function of ``(seed, epoch, index)``.
    """

    def __init__(self, rows: list[dict], *, size: int, seed: int, train: bool, augment: bool = False,
                 box_jitter: float = 0.0, perturb: PerturbationAugment | None = None) -> None:
        self.rows = rows
        self.size = int(size)
        self.seed = int(seed)
        self.train = bool(train)
        self.box_jitter = float(box_jitter) if train else 0.0
        self.augment = albumentations_pipeline() if (augment and train) else None
        self.perturb = perturb if train else None
        self.image_ids = [r["image_id"] for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def sample(self, index: int) -> Sample:
        r = self.rows[index]
        image = decode_png(r["image"]["bytes"])
        mask = decode_png(r["mask"]["bytes"]) > 0
        return Sample(r["image_id"], r["modality"], image, mask, list(r["bbox"]))

    def __getitem__(self, item: tuple[int, int]) -> dict:
        epoch, index = item
        s = self.sample(index)
        rng = np.random.default_rng(sample_seed(self.seed, epoch, index))
        if self.perturb is not None:
            s = self.perturb(s, rng)
        image, mask = _resize(s.image, s.mask, self.size)
        if image.dtype == np.uint16:
            image = (image.astype(np.float32) / 65535.0 * 255.0).round().astype(np.uint8)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        box = mask_to_bbox(mask)
        if box is None:
            raise FinetuneDataError(f"{s.image_id}: the mask is empty after resizing to {self.size}; raise --image_size")
        if self.augment is not None:
            self.augment.set_random_seed(int(rng.integers(2**31)))
            out = self.augment(image=image, mask=mask.astype(np.uint8), bboxes=np.array([box], np.float32), labels=[1])
            moved = mask_to_bbox(out["mask"] > 0)
            if moved is not None:  # the tight box of the moved mask (albumentations' rotated box is loose)
                image, mask, box = out["image"], out["mask"] > 0, moved
        box_t = torch.tensor(box, dtype=torch.float32)
        if self.box_jitter > 0:  # each side moves by up to box_jitter of the box size (MedSAM-style prompt noise)
            wh = torch.tensor([box[2] - box[0], box[3] - box[1]] * 2, dtype=torch.float32)
            box_t = box_t + torch.from_numpy(rng.uniform(-1, 1, 4).astype(np.float32)) * self.box_jitter * wh
            box_t[0::2] = box_t[0::2].clamp(0, self.size - 1)
            box_t[1::2] = box_t[1::2].clamp(0, self.size - 1)
            box_t[2] = torch.maximum(box_t[2], box_t[0] + 1)
            box_t[3] = torch.maximum(box_t[3], box_t[1] + 1)
        img_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        return {"image": img_t, "box": box_t, "mask": torch.from_numpy(np.ascontiguousarray(mask)).float(),
                "index": index}


def collate(items: list[dict]) -> dict:
    return {"image": torch.stack([i["image"] for i in items]), "box": torch.stack([i["box"] for i in items]),
            "mask": torch.stack([i["mask"] for i in items]), "index": torch.tensor([i["index"] for i in items])}


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of one epoch (a permutation seeded by ``(seed, epoch)``)."""
    g = torch.Generator().manual_seed(sample_seed(seed, epoch, -1))
    return torch.randperm(n, generator=g).tolist()


def rank_batches(n: int, *, seed: int, epoch: int, per_device: int, world: int, rank: int, accumulation: int,
                 ) -> list[list[tuple[int, int]]]:
    """This rank's micro-batches of one epoch, as lists of ``(epoch, index)``.

    The epoch's permutation is cut into global batches of ``per_device * world * accumulation`` samples (the
    incomplete tail is dropped); micro-batch ``a`` of a global batch gives rank ``r`` the slice
    ``[(a * world + r) * per_device, ... + per_device)``. The union over ranks of a global batch is the same
    set of samples for every ``world`` with the same global batch size.
    """
    order = epoch_order(n, seed, epoch)
    g = per_device * world * accumulation
    out: list[list[tuple[int, int]]] = []
    for start in range(0, n - g + 1, g):
        chunk = order[start:start + g]
        for a in range(accumulation):
            lo = (a * world + rank) * per_device
            out.append([(epoch, i) for i in chunk[lo:lo + per_device]])
    return out
