"""Model directories in the Hugging Face layout: config.json, model.safetensors, README.md.

Loading never unpickles anything: the config is JSON and the weights are safetensors.
Saving is atomic: everything is written into a hidden temporary sibling directory which is
renamed into place only once complete, so a crash never leaves a directory that looks whole.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, ModelDirError

FORMAT = "tsformer"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"

FileContent = str | bytes | Callable[[Path], None]


def check_writable_target(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fail before any work if ``path`` exists and may not be replaced."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise ModelDirError(
            f"output directory {p} already exists; choose another or pass --overwrite")
    if p.exists() and not p.is_dir():
        raise ModelDirError(f"output path {p} is a file, not a directory")
    return p


def write_dir_atomic(path: str | os.PathLike, files: dict[str, FileContent],
                     overwrite: bool = False) -> Path:
    """Write ``files`` (name -> text, bytes, or a writer taking the target path) as one unit."""
    final = check_writable_target(path, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        for name, content in files.items():
            target = tmp / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            elif isinstance(content, str):
                target.write_text(content, encoding="utf-8")
            else:
                content(target)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def save_pretrained(
    path: str | os.PathLike, model: nn.Module, config: dict[str, Any], *,
    card: str | None = None, extra_files: dict[str, FileContent] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save ``model`` with its ``config`` (preset, model options, input shape, classes...)."""
    from safetensors.torch import save_file

    cfg = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
    if hasattr(model, "resolved_options") and isinstance(cfg.get("model"), dict):
        # "auto" shape options are written as built: a later change of the rule that
        # resolves them cannot change what a saved model loads as.
        cfg["model"] = {**cfg["model"], **model.resolved_options()}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    files: dict[str, FileContent] = {
        CONFIG_NAME: _json(cfg),
        WEIGHTS_NAME: lambda p: save_file(state, str(p), metadata={"format": "pt"}),
        CARD_NAME: card if card is not None else model_card(cfg),
    }
    files.update(extra_files or {})
    return write_dir_atomic(path, files, overwrite=overwrite)


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The validated ``config.json`` of a model directory."""
    p = Path(path)
    if not p.exists():
        raise ModelDirError(f"model directory {p} does not exist")
    if not p.is_dir():
        raise ModelDirError(f"{p} is not a model directory (expected a folder with {CONFIG_NAME})")
    cfg_path = p / CONFIG_NAME
    if not cfg_path.is_file():
        raise ModelDirError(f"{p} has no {CONFIG_NAME}; is it a tsformer model directory?")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelDirError(f"{cfg_path} is not valid JSON ({e}); the directory is corrupt") from e
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ModelDirError(
            f"{cfg_path} is not a tsformer config (missing \"format\": \"tsformer\")")
    if cfg.get("format_version", 0) > FORMAT_VERSION:
        raise ModelDirError(
            f"{p} was saved by a newer tsformer (format {cfg['format_version']}); upgrade tsformer"
        )
    for key in ("preset", "model", "input", "classes"):
        if key not in cfg:
            raise ModelDirError(f"{cfg_path} lacks {key!r}; the directory is incomplete or corrupt")
    return cfg


def build_from_config(cfg: dict[str, Any]) -> nn.Module:
    """An untrained model of the architecture a config describes."""
    from .models import ARCHITECTURES, get_preset

    arch = cfg.get("arch") or get_preset(cfg["preset"])["arch"]
    if arch not in ARCHITECTURES:
        raise ModelDirError(f"model architecture {arch!r} is unknown to this tsformer version")
    try:
        return ARCHITECTURES[arch](
            int(cfg["input"]["n_channels"]), int(cfg["input"]["n_timepoints"]),
            len(cfg["classes"]), **cfg["model"],
        )
    except (TypeError, KeyError, ConfigError) as e:
        raise ModelDirError(f"config.json does not describe a buildable model: {e}") from e


def load_pretrained(path: str | os.PathLike, *, device: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Model (in eval mode) and config from a directory written by :func:`save_pretrained`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    cfg = read_config(p)
    weights = p / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelDirError(f"{p} has no {WEIGHTS_NAME}; the directory is incomplete")
    model = build_from_config(cfg)
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelDirError(f"{weights} is corrupt or not a safetensors file ({e})") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ModelDirError(f"{weights} does not match config.json ({first})") from e
    return model.to(device).eval(), cfg


def inference_amp(cfg: dict[str, Any]) -> str:
    """The precision a saved model predicts in: the one it trained and validated in
    (``train.amp``; "auto" for directories written before the option)."""
    from .amp import AMP_MODES

    train = cfg.get("train")
    amp = train.get("amp", "auto") if isinstance(train, dict) else "auto"
    if amp not in AMP_MODES:
        raise ModelDirError(f"config.json: train.amp must be one of {', '.join(AMP_MODES)}, "
                            f"not {amp!r}; the directory is corrupt")
    return amp


def model_card(cfg: dict[str, Any], metrics: dict[str, Any] | None = None) -> str:
    """A README model card: what the model is, what it was trained on, how well, how to load."""
    data = cfg.get("data") or {}
    shape = cfg.get("input", {})
    lines = [
        "---",
        "library_name: tsformer",
        "tags: [time-series-classification, transformer, tsformer]",
        "---",
        "",
        f"# tsformer `{cfg.get('preset')}` model"
        + (f" on {data['name']}" if data.get("name") else ""),
        "",
        "A transformer classifier for time series, trained with "
        "[tsformer](https://pypi.org/project/tsformer/).",
        "",
        "## Data",
        f"- dataset: {data.get('name', 'user data')} ({data.get('source', 'unknown source')})",
        f"- input: {shape.get('n_channels')} channel(s) x {shape.get('n_timepoints')} time points, "
        "layout `(n_cases, n_channels, n_timepoints)`",
        f"- classes: {', '.join(str(c) for c in cfg.get('classes', []))}",
        f"- normalisation: {cfg.get('normalization', 'none')} "
        "(the model expects data prepared the same way as its training data)",
        "",
        "## Model",
        f"- preset `{cfg.get('preset')}`, architecture `{cfg.get('arch')}`",
        f"- options: `{json.dumps(cfg.get('model', {}))}`",
        f"- parameters: {cfg.get('n_parameters', 'n/a')}",
    ]
    if metrics:
        lines += ["", "## Evaluation"]
        for k in ("accuracy", "loss", "n_samples", "split"):
            if k in metrics:
                v = metrics[k]
                lines.append(f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}")
    lines += [
        "",
        "## Intended use",
        "Classifying series shaped and normalised like the training data. Not validated for",
        "other sampling rates, lengths or sensors; check accuracy on your own held-out data.",
        "",
        "## How to load",
        "```python",
        "import tsformer",
        "clf = tsformer.load(\"path/to/this/directory\")",
        "clf.predict(X)  # X: (n_cases, n_channels, n_timepoints)",
        "```",
        "or `tsformer predict path/to/this/directory FILE` on the command line.",
        "",
    ]
    return "\n".join(lines)


def make_config(
    preset: str, model_params: dict[str, Any], train: dict[str, Any], *,
    n_channels: int, n_timepoints: int, classes: list[Any], data: dict[str, Any] | None = None,
    n_parameters: int | None = None,
) -> dict[str, Any]:
    """The one config layout shared by the CLI's run directories and the estimator."""
    from . import __version__
    from .models import get_preset

    return {
        "tsformer_version": __version__,
        "preset": preset,
        "arch": get_preset(preset)["arch"],
        "model": model_params,
        "input": {"n_channels": int(n_channels), "n_timepoints": int(n_timepoints),
                  "layout": "(n_cases, n_channels, n_timepoints)"},
        "classes": [c.item() if hasattr(c, "item") else c for c in classes],
        "normalization": model_params.get("normalize", "none"),
        "n_parameters": n_parameters,
        "train": train,
        "data": data or {},
    }
