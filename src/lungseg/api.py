"""Python inference API: :class:`Segmenter` (configure once, segment many), ``segment()`` and ``analyze()``."""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import postprocess as post
from .checkpoint import load_weights
from .errors import InputError, ModelError
from .extents import DEFAULT_EXTENT, check_extent
from .io import load_any
from .pipeline import SegmentationPipeline
from .quality import MIN_QUALITY, flags_of

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.pt"
DEFAULT_CARD = WEIGHTS_DIR / "default.json"
FAST_WEIGHTS = WEIGHTS_DIR / "fast.pt"
FAST_CARD = WEIGHTS_DIR / "fast.json"
# The shipped models, by the name that model= takes: the accurate default and the small, fast one.
SHIPPED_MODELS = ("default", "fast")


def shipped_weights(name: str = "default") -> tuple[Path, str]:
    """(path, recorded sha256) of the shipped model ``name`` (one of :data:`SHIPPED_MODELS`)."""
    files = {"default": (DEFAULT_WEIGHTS, DEFAULT_CARD), "fast": (FAST_WEIGHTS, FAST_CARD)}
    if name not in files:
        raise ModelError(f"no shipped model named {name!r}; choose one of {', '.join(SHIPPED_MODELS)} "
                         "or give a weights file's path")
    weights, card = files[name]
    if not card.is_file() or not weights.is_file():
        raise ModelError(f"{weights}: the {name} weights are not installed")
    return weights, json.loads(card.read_text())["sha256"]


def default_weights() -> tuple[Path, str]:
    """(path, recorded sha256) of the shipped default weights."""
    return shipped_weights("default")


def shipped_name(model) -> str | None:
    """The shipped model that ``model`` names (None names the default), or None for a file path."""
    if model is None:
        return "default"
    if isinstance(model, str) and model in SHIPPED_MODELS:
        return model
    return None


def open_weights(model=None, *, hash_file: bool = True):
    """(network, config, sha256) of ``model``: a shipped model's name (None: default), checked
    against its recorded sha256, or a weights file or training checkpoint's path (its sha256
    computed, or None where ``hash_file`` is False)."""
    from .checkpoint import sha256_file

    name = shipped_name(model)
    if name is not None:
        path, sha = shipped_weights(name)
        network, config = load_weights(path, expected_sha256=sha)
        return network, config, sha
    network, config = load_weights(model)
    return network, config, sha256_file(model) if hash_file else None


@dataclass
class Result:
    """What :func:`analyze` knows about one image.

    ``mask`` 0/1 and ``labels`` 0/1/2 (uint8, the image's size), ``probability`` (float32),
    ``areas`` (:func:`measure` of the labels), ``quality`` (the estimated Dice of the mask
    against an expert's, in [0, 1]; NaN for a model without a quality head), ``flags``
    (reasons not to trust the mask, :data:`lungseg.quality.FLAGS`), and the parts of the
    estimate: ``dice_estimate``, ``frontal_probability``, ``inverted_probability``.
    """

    mask: np.ndarray
    labels: np.ndarray
    probability: np.ndarray
    areas: dict
    quality: float
    flags: list[str] = field(default_factory=list)
    dice_estimate: float = float("nan")
    frontal_probability: float = float("nan")
    inverted_probability: float = float("nan")

    @property
    def trusted(self) -> bool:
        """True when no flag is raised."""
        return not self.flags


def resolve_device(device="auto", *, cuda_available: bool | None = None, no_cuda: str | None = None) -> torch.device:
    """The device to run on: ``auto`` (CUDA where available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    The one device check of every path (eager Segmenter, exported-model backends,
    training): a device that cannot be used here is an InputError. ``cuda_available``:
    whether the runtime that will run the model has CUDA (None: torch's own); ``no_cuda``:
    why not, for the message (None: torch's reason).
    """
    name = str(device).strip().lower()
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
        if no_cuda is None:
            no_cuda = ("this torch is built without CUDA (a CPU-only install)" if not torch.backends.cuda.is_built()
                       else "torch sees no CUDA device (no GPU, driver or CUDA_VISIBLE_DEVICES)")
        count = torch.cuda.device_count() if cuda_available else 0
    else:
        count = None
    if name == "auto":
        return torch.device("cuda" if cuda_available else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device {device!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not cuda_available:
            raise InputError(f"CUDA requested (device {device!r}) but {no_cuda}; use --device cpu or auto")
        if count is not None and dev.index is not None and dev.index >= count:
            raise InputError(f"CUDA requested (device {device!r}) but torch sees {count} CUDA device(s)")
    elif dev.type != "cpu":
        raise InputError(f"device {device!r}: lungseg runs on cpu or cuda")
    return dev


class BaseSegmenter:
    """The host side of segmentation, shared by :class:`Segmenter` and :func:`lungseg.load`'s models.

    A subclass sets ``threshold`` (the one its graph applies), ``postprocess``, ``config``
    and ``extent`` (the default mask convention, see :mod:`lungseg.extents`) and implements
    ``_run(batch [N, H, W], extent) -> (probability float32, mask uint8, quality float32)``,
    ``[N, H, W]``, ``[N, H, W]`` and ``[N, 4]``; input reading, re-thresholding and clean-up live here once.
    """

    threshold: float
    postprocess: bool
    extent: str = DEFAULT_EXTENT

    def _run(self, batch: np.ndarray, extent: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _extent(self, extent: str | None) -> str:
        return self.extent if extent is None else check_extent(extent)

    def _finish(self, prob, mask, labels, threshold, postprocess):
        threshold = self.threshold if threshold is None else float(threshold)
        if threshold != self.threshold:
            mask = (prob > threshold).astype(np.uint8)
        if postprocess is None:
            postprocess = self.postprocess
        if postprocess:
            mask = post.clean_mask(mask)
        return post.label_lungs(mask) if labels else mask.astype(np.uint8)

    def probability(self, image, *, extent: str | None = None) -> np.ndarray:
        """Lung probability (float32, the image's size) before thresholding."""
        return self._run(load_any(image)[None], self._extent(extent))[0][0]

    def segment(self, image, *, labels: bool = False, threshold: float | None = None,
                postprocess: bool | None = None, extent: str | None = None) -> np.ndarray:
        """0/1 mask (or 0/1/2 labels: 1 patient's right = image left) at the image's size.

        ``extent``: ``"visible"`` (the lung field) or ``"full"`` (the full lung extent, with
        the lung behind the heart); None: the segmenter's own.
        """
        prob, mask, _ = self._run(load_any(image)[None], self._extent(extent))
        return self._finish(prob[0], mask[0], labels, threshold, postprocess)

    def segment_many(self, images, *, batch_size: int = 4, extent: str | None = None, **kwargs) -> list[np.ndarray]:
        """Segment several images; images of equal size run through the network together."""
        options = {"labels": False, "threshold": None, "postprocess": None, **kwargs}
        return self._many(images, batch_size, extent, lambda p, m, q: self._finish(p, m, **options))

    def analyze(self, image, *, extent: str | None = None, threshold: float | None = None,
                postprocess: bool | None = None, min_quality: float = MIN_QUALITY) -> Result:
        """Mask, labels, probability, areas, quality and flags of one image (a :class:`Result`).

        ``min_quality``: quality under it raises the ``low_confidence`` flag.
        """
        prob, mask, quality = self._run(load_any(image)[None], self._extent(extent))
        return self._result(prob[0], mask[0], quality[0], threshold, postprocess, min_quality)

    def analyze_many(self, images, *, batch_size: int = 4, extent: str | None = None, threshold: float | None = None,
                     postprocess: bool | None = None, min_quality: float = MIN_QUALITY) -> list[Result]:
        """:meth:`analyze` of several images; images of equal size run through the network together."""
        return self._many(images, batch_size, extent,
                          lambda p, m, q: self._result(p, m, q, threshold, postprocess, min_quality))

    def _result(self, prob, mask, quality, threshold, postprocess, min_quality) -> Result:
        labels = self._finish(prob, mask, True, threshold, postprocess)
        row = [float(v) for v in quality]
        return Result(mask=(labels > 0).astype(np.uint8), labels=labels, probability=prob,
                      areas=post.measure(labels, labels=True), quality=row[0],
                      flags=flags_of(row, labels, min_quality), dice_estimate=row[1],
                      frontal_probability=row[2], inverted_probability=row[3])

    def _many(self, images, batch_size: int, extent, finish) -> list:
        """``finish(probability, mask, quality)`` of each image; equal sizes batched together."""
        extent = self._extent(extent)
        arrays = [load_any(im) for im in images]
        out: list = [None] * len(arrays)
        by_shape: dict = {}
        for i, a in enumerate(arrays):
            by_shape.setdefault(a.shape, []).append(i)
        for idx in by_shape.values():
            for k in range(0, len(idx), batch_size):
                chunk = idx[k:k + batch_size]
                prob, mask, quality = self._run(np.stack([arrays[i] for i in chunk]), extent)
                for j, i in enumerate(chunk):
                    out[i] = finish(prob[j], mask[j], quality[j])
        return out


class Segmenter(BaseSegmenter):
    """Lung segmentation with one model, loaded once.

    ``model``: a shipped model, ``"default"`` (None) or ``"fast"`` (the same test Dice at
    about a quarter of the cost; see the README's speed table), or a path to a lungseg weights
    file or training checkpoint. ``segment(image)`` accepts a path (PNG, JPEG, TIFF, DICOM), a
    PIL image or a numpy array and returns a ``uint8`` mask of the image's own size.
    ``extent``: the default mask convention, ``"visible"`` or ``"full"`` (each call may
    ask for the other); a model trained with one output has only ``"visible"``.
    """

    def __init__(self, model=None, device: str = "auto", threshold: float = 0.5, postprocess: bool = True,
                 extent: str = DEFAULT_EXTENT):
        network, config, _ = open_weights(model, hash_file=False)
        pipeline = SegmentationPipeline(network, config.get("image_size", 256), float(threshold), extent)
        self._attach(pipeline, config, device, postprocess)

    @classmethod
    def from_pipeline(cls, pipeline: torch.nn.Module, config: dict, device: str = "auto",
                      postprocess: bool = True) -> "Segmenter":
        """A Segmenter around a ready deploy module (a :class:`SegmentationPipeline` or one with its contract)."""
        self = cls.__new__(cls)
        self._attach(pipeline, config, device, postprocess)
        return self

    def _attach(self, pipeline, config: dict, device: str, postprocess: bool) -> None:
        self.device = resolve_device(device)
        self.config = config
        self.threshold = float(pipeline.postprocess.threshold)
        self.postprocess = postprocess
        self.extent = getattr(pipeline, "extent", DEFAULT_EXTENT)
        self.extents = list(getattr(pipeline, "extents", [self.extent]))
        self.pipeline = pipeline.to(self.device).eval()

    @torch.inference_mode()
    def _run(self, batch: np.ndarray, extent: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pixels = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        if extent == self.extent:
            out = self.pipeline(pixels[:, None])
        else:
            out = self.pipeline.run(pixels[:, None], extent)
        prob, mask = out[0], out[1]
        # a deploy module without a quality output (the benchmark's peer replicas): NaN
        quality = out[2].float().cpu().numpy() if len(out) > 2 else np.full((len(batch), 4), np.nan, np.float32)
        return prob[:, 0].cpu().numpy(), mask[:, 0].cpu().numpy(), quality


def _serialised(cached):
    """``cached`` (an ``lru_cache`` function) behind a lock: threads calling at once load the model once."""
    lock = threading.Lock()

    @functools.wraps(cached)
    def call(*args):
        with lock:
            return cached(*args)

    call.cache_clear, call.cache_info = cached.cache_clear, cached.cache_info
    return call


@_serialised
@functools.lru_cache(maxsize=4)
def _cached_segmenter(device: str, model: str = "default") -> Segmenter:
    """The shipped model's Segmenter on ``device``, made once (also when threads ask at the same time)."""
    return Segmenter(model, device=device)


def _shipped(model: str) -> str:
    if shipped_name(model) is None:
        raise InputError(f"model={model!r}: the top-level functions take a shipped model "
                         f"({', '.join(SHIPPED_MODELS)}); for a weights file use lungseg.Segmenter(path)")
    return shipped_name(model)


def segment(image, *, labels: bool = False, threshold: float = 0.5, postprocess: bool = True,
            device: str = "auto", extent: str = DEFAULT_EXTENT, model: str = "default") -> np.ndarray:
    """Segment the lungs of one X-ray with a shipped model (loaded once, cached).

    ``image``: a path to a PNG, JPEG, TIFF, BMP or DICOM file, a PIL image, or a numpy
    array (HxW, HxWx1, HxWx3 or HxWx4; any integer or float type), in its own pixel units.
    Returns a ``uint8`` array of the image's height and width: 0/1, or with ``labels`` 0
    background, 1 the patient's right lung, 2 the patient's left lung (on a standard PA view
    the patient's right lung is on the image's left). ``postprocess=False`` returns the
    network's own thresholded mask. ``extent``: ``"visible"`` (default: the visible lung
    field, the heart shadow left out, as in Montgomery/JSRT masks) or ``"full"`` (the full
    lung extent, with the lung behind the heart and down to the diaphragm). ``model``:
    ``"default"`` or ``"fast"`` (the small model: about a quarter of the cost, the same test Dice).
    Bad input raises :class:`~lungseg.errors.InputError`.
    """
    return _cached_segmenter(device, _shipped(model)).segment(image, labels=labels, threshold=threshold, postprocess=postprocess,
                                             extent=extent)


def analyze(image, *, extent: str = DEFAULT_EXTENT, threshold: float = 0.5, device: str = "auto",
            min_quality: float = MIN_QUALITY, model: str = "default") -> Result:
    """Segment one X-ray with the shipped model and say how far the mask can be trusted.

    Returns a :class:`Result`: ``mask``, ``labels``, ``probability``, ``areas``, ``quality``
    (estimated Dice against an expert's mask, in [0, 1]) and ``flags`` (e.g.
    ``not_frontal_chest``, ``inverted``, ``one_lung``, ``implausible_shape``,
    ``low_confidence`` when quality is under ``min_quality``). ``model``: ``"default"`` or
    ``"fast"``. See :mod:`lungseg.quality`.
    """
    return _cached_segmenter(device, _shipped(model)).analyze(image, extent=extent, threshold=threshold, min_quality=min_quality)


def measure(mask_or_labels, spacing=None, *, labels: bool | None = None) -> dict:
    """Lung areas per lung and in total (pixels; mm^2 with ``spacing``), right/left ratio.

    Takes a 0/1, 0/255 or bool mask, or 0/1/2 labels (``labels=True`` says which; None tells
    from the values); ``spacing`` (mm, one number or (row, column)) must be positive. See
    :func:`lungseg.postprocess.measure`.
    """
    return post.measure(mask_or_labels, spacing, labels=labels)
