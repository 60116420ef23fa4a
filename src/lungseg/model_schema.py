"""The one schema of a lungseg model's configuration, checked whenever a model file is loaded.

:func:`check_model_config` validates the ``config`` of a weights file or training
checkpoint, :func:`check_artifact_metadata` the metadata of an exported model; both raise
:class:`~lungseg.errors.ModelError` naming the file and the field. The bounds keep a model
file from asking for absurd work (a 100000-pixel network input) or for a network the
pipeline cannot run:

* ``image_size``: the network's input side, an integer multiple of 32 (the encoder's
  stride) in [32, 2048];
* ``decoder_channels``: five integers (one per decoder stage) in [1, 512], and the largest
  decoder activation, channels x (image_size / stride)^2, at most 2^27 elements per image
  (512 MiB in float32);
* ``in_channels``: 1 (the pipeline feeds one grey channel);
* ``encoder``: one of :data:`~lungseg.models.ENCODERS`; ``attention``: ``"sga"`` or none;
  ``extents``: distinct names from :data:`~lungseg.extents.EXTENTS`;
* ``threshold``: a finite number strictly between 0 and 1;
* an artifact's ``inputs``/``outputs``: exactly the graph contract of
  :mod:`lungseg.export.metadata`; ``schema_version``: the supported one; unknown keys are
  refused.
"""

from __future__ import annotations

import json
import math
import re

from .errors import ModelError
from .extents import DEFAULT_EXTENT, EXTENTS
from .models import ATTENTIONS, ENCODERS

IMAGE_SIZE_MIN, IMAGE_SIZE_MAX, IMAGE_SIZE_STEP = 32, 2048, 32
DECODER_STAGES, DECODER_CHANNELS_MAX = 5, 512
MAX_ACTIVATION = 1 << 27  # elements of the largest decoder activation, per image
IN_CHANNELS = 1
MODEL_ARGS = ("encoder", "attention", "decoder_channels", "in_channels", "extents", "quality")
REQUIRED_MODEL_ARGS = ("encoder", "attention", "decoder_channels", "in_channels")
PRECISIONS = ("fp32", "fp16", "int8")
TRACE_DEVICES = ("cpu", "cuda")
RANDOM_WEIGHTS = "random"  # weights_sha256 of the benchmark's random-weight models
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fail(where, field: str, value, rule: str):
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise ModelError(f"{where}: {field} = {shown} is invalid: {rule}")


# Each rule returns None when the value is valid, else what a valid value is.

def image_size_rule(v):
    if not (_is_int(v) and IMAGE_SIZE_MIN <= v <= IMAGE_SIZE_MAX and v % IMAGE_SIZE_STEP == 0):
        return f"must be an integer multiple of {IMAGE_SIZE_STEP} in [{IMAGE_SIZE_MIN}, {IMAGE_SIZE_MAX}]"
    return None


def threshold_rule(v):
    return None if _is_real(v) and 0 < v < 1 else "must be a finite number strictly between 0 and 1"


def _encoder(v):
    return None if isinstance(v, str) and v in ENCODERS else f"must be one of {', '.join(sorted(ENCODERS))}"


def _attention(v):
    return None if v in ATTENTIONS or v in ("none", "") else "must be 'sga' or none (null)"


def _decoder_channels(v):
    if (isinstance(v, (list, tuple)) and len(v) == DECODER_STAGES
            and all(_is_int(c) and 1 <= c <= DECODER_CHANNELS_MAX for c in v)):
        return None
    return f"must be {DECODER_STAGES} integers in [1, {DECODER_CHANNELS_MAX}]"


def _in_channels(v):
    return None if _is_int(v) and v == IN_CHANNELS else f"must be {IN_CHANNELS} (one grey channel)"


def _extents(v):
    if (isinstance(v, (list, tuple)) and v and all(isinstance(e, str) and e in EXTENTS for e in v)
            and len(set(v)) == len(v)):
        return None
    return f"must be distinct names from {', '.join(EXTENTS)}, at least one"


def _quality(v):
    if v is None or (isinstance(v, dict) and set(v) == {"width"} and _is_int(v["width"]) and 4 <= v["width"] <= 64):
        return None
    return 'must be null or {"width": 4..64} (the quality head)'


MODEL_RULES = {"encoder": _encoder, "attention": _attention, "decoder_channels": _decoder_channels,
               "in_channels": _in_channels, "extents": _extents, "quality": _quality}


def _check_keys(where, obj, field: str, allowed, required) -> None:
    if not isinstance(obj, dict):
        _fail(where, field, obj, "must be a mapping")
    unknown = sorted(str(k) for k in obj if k not in allowed)
    if unknown:
        raise ModelError(f"{where}: {field} has unknown key(s) {', '.join(unknown)}; known: {', '.join(allowed)}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise ModelError(f"{where}: {field} lacks {', '.join(missing)}")


def _check_fields(where, obj: dict, rules: dict, prefix: str = "") -> None:
    for key, rule in rules.items():
        if key in obj and (why := rule(obj[key])):
            _fail(where, prefix + key, obj[key], why)


def _check_model(where, model: dict, prefix: str, image_size: int) -> None:
    """The network's constructor arguments, and its largest activation at ``image_size``."""
    _check_fields(where, model, MODEL_RULES, prefix)
    for stage, channels in enumerate(model["decoder_channels"]):  # strides 16, 8, 4, 2, 1
        side = image_size >> (DECODER_STAGES - 1 - stage)
        if channels * side * side > MAX_ACTIVATION:
            _fail(where, prefix + "decoder_channels", model["decoder_channels"],
                  f"stage {stage + 1} would need {channels} x {side} x {side} values per image at image_size "
                  f"{image_size}, more than {MAX_ACTIVATION}")


def check_model_config(config, where) -> dict:
    """A weights file's or training checkpoint's ``config`` (model arguments and ``image_size``), validated."""
    _check_keys(where, config, "config", (*MODEL_ARGS, "image_size"), (*REQUIRED_MODEL_ARGS, "image_size"))
    if why := image_size_rule(config["image_size"]):
        _fail(where, "image_size", config["image_size"], why)
    _check_model(where, config, "", config["image_size"])
    return config


# --- exported artifacts -----------------------------------------------------------------------

def _text(v):
    return None if isinstance(v, str) and 0 < len(v) <= 200 else "must be a short, non-empty string"


def _sha256(v):
    ok = isinstance(v, str) and (v == RANDOM_WEIGHTS or _SHA256.fullmatch(v))
    return None if ok else "must be a sha256 hex digest (64 lower-case hex digits)"


def _choice(choices):
    return lambda v: None if isinstance(v, str) and v in choices else f"must be one of {', '.join(choices)}"


def _opset(v):
    return None if v is None or (_is_int(v) and 1 <= v <= 99) else "must be null or an integer in [1, 99]"


def _positive_below(top):
    def rule(v):
        return None if _is_real(v) and 0 < v < top else f"must be a finite number in (0, {top})"
    return rule


PREPROCESSING_RULES = {"resize": _text, "standardize": _text, "eps": _positive_below(1), "clip": _positive_below(1e6)}


def _profile(v):
    def shape(s):
        return isinstance(s, list) and len(s) == 4 and all(_is_int(d) and 1 <= d <= 65536 for d in s) and s[1] == 1
    ok = isinstance(v, dict) and set(v) == {"min", "opt", "max"} and all(shape(v[k]) for k in v)
    return None if ok else "must hold min, opt, max shapes [N, 1, H, W] of positive integers"


def _record(v):
    """A descriptive record (the int8 quantization settings): text keys, JSON scalars or lists of them."""
    def scalar(x):
        return x is None or isinstance(x, (str, bool, int)) or _is_real(x)
    ok = (isinstance(v, dict) and len(v) <= 64 and all(isinstance(k, str) for k in v)
          and all(scalar(x) or (isinstance(x, list) and all(map(scalar, x))) for x in v.values()))
    return None if ok else "must map names to numbers, text or lists of them"


def _artifact_rules() -> dict:
    from .export.formats import FORMATS

    return {"lungseg_version": _text, "format": _choice([f.name for f in FORMATS]), "weights_sha256": _sha256,
            "image_size": image_size_rule, "threshold": threshold_rule, "extent": _choice(EXTENTS),
            "opset": _opset, "precision": _choice(PRECISIONS),
            "device": _choice(TRACE_DEVICES), "tensorrt_version": _text, "gpu": _text, "profile": _profile,
            "quantization": _record}


ARTIFACT_REQUIRED = ("producer", "schema_version", "image_size", "threshold", "inputs", "outputs", "precision")


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # JSON types too: true is not 1


def _check_contract(where, field: str, value, contract: dict) -> None:
    """``value`` must equal ``contract`` (names, dtypes, shapes); the message names the first difference."""
    if _same(value, contract):
        return
    if not isinstance(value, dict) or set(value) != set(contract):
        _fail(where, field, value, f"must name exactly {', '.join(contract)}")
    for name, spec in contract.items():
        got = value[name]
        if not isinstance(got, dict) or set(got) != set(spec):
            _fail(where, f"{field}.{name}", got, f"lungseg's contract is {spec}")
        for key in spec:
            if not _same(got[key], spec[key]):
                _fail(where, f"{field}.{name}.{key}", got[key], f"lungseg's contract is {spec[key]!r}")


def check_artifact_metadata(meta, where) -> dict:
    """An exported model's parsed metadata, validated; ``extent`` defaults to ``visible`` (older artifacts)."""
    from .export.metadata import INPUTS, OUTPUTS, PRODUCER, SCHEMA_VERSION

    if not isinstance(meta, dict) or meta.get("producer") != PRODUCER:
        raise ModelError(f"{where}: metadata does not come from lungseg")
    version = meta.get("schema_version")
    if not _is_int(version) or version != SCHEMA_VERSION:
        raise ModelError(f"{where}: metadata schema {version!r} is not the supported {SCHEMA_VERSION}")
    rules = _artifact_rules()
    known = tuple(dict.fromkeys((*ARTIFACT_REQUIRED, *rules, "preprocessing", "model")))
    _check_keys(where, meta, "metadata", known, ARTIFACT_REQUIRED)
    meta.setdefault("extent", DEFAULT_EXTENT)  # absent: an artifact from before extents
    _check_fields(where, meta, rules)
    if "preprocessing" in meta:
        _check_keys(where, meta["preprocessing"], "preprocessing", PREPROCESSING_RULES, PREPROCESSING_RULES)
        _check_fields(where, meta["preprocessing"], PREPROCESSING_RULES, "preprocessing.")
    _check_contract(where, "inputs", meta["inputs"], INPUTS)
    _check_contract(where, "outputs", meta["outputs"], OUTPUTS)
    model = meta.get("model")
    if model is None:
        return meta
    if isinstance(model, dict) and set(model) == {"peer"}:  # a benchmark peer replica
        if why := _text(model["peer"]):
            _fail(where, "model.peer", model["peer"], why)
        return meta
    _check_keys(where, model, "model", MODEL_ARGS, REQUIRED_MODEL_ARGS)
    _check_model(where, model, "model.", meta["image_size"])
    extents = model.get("extents", [DEFAULT_EXTENT])
    if meta["extent"] not in extents:
        _fail(where, "extent", meta["extent"], f"the model has only {', '.join(extents)}")
    return meta
