"""Model directories in the Hugging Face layout: config.json, model.safetensors, README.md.

``config.json`` is :meth:`tsformer.config.RunConfig.to_dict` (plus the parameter count);
run directories add ``metrics.json``, ``history.csv``, plots and ``sample.json`` (a few test
series for the demo page).  Loading never unpickles anything: the config is JSON, bounded in
size, and the weights are safetensors.  Saving is atomic: everything is written into a hidden
temporary sibling directory which is renamed into place only once complete, so a crash never
leaves a directory that looks whole.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import RunConfig
from .errors import ConfigError, DataError, ModelDirError
from .models import count_parameters
from .training import History

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
SAMPLE_NAME = "sample.json"
#: A config.json larger than this is refused unread (a real one is a few kB).
MAX_CONFIG_BYTES = 1 << 20

FileContent = str | bytes | Callable[[Path], None]


def check_creatable(path: str | os.PathLike) -> Path:
    """Fail before any work if nothing can be created at ``path``: below a file, in a
    read-only or pseudo file system.  Makes a probe directory at the nearest existing
    ancestor and removes it, so nothing is left behind."""
    p = Path(path)
    if str(path) == "":
        raise ModelDirError("the output path is empty; give a directory name")
    if p.exists() and not p.is_dir():
        raise ModelDirError(f"output path {p} is a file, not a directory")
    ancestor = p.parent if not p.is_dir() else p
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ModelDirError(f"cannot create {p}: {ancestor} is not a directory")
    try:  # the one sure test of "can a directory be made here": make one, then remove it
        probe = tempfile.mkdtemp(prefix=".tsformer-probe-", dir=ancestor)
        os.rmdir(probe)
    except OSError as e:
        raise ModelDirError(f"cannot create {p}: {ancestor} is not writable "
                            f"({e.strerror or e})") from None
    return p


def check_writable_target(path: str | os.PathLike, overwrite: bool = False, *,
                          marker: str = CONFIG_NAME, kind: str = "model directory") -> Path:
    """Fail before any work if ``path`` may not become a model directory: what
    :func:`check_creatable` refuses, a non-empty directory without ``overwrite``, and, even
    with it, a non-empty directory that is not a tsformer model directory (overwriting
    replaces the whole directory).  An empty directory may always be filled.  ``marker`` and
    ``kind`` name another kind of output directory (e.g. explanations) and the file that
    identifies one."""
    p = check_creatable(path)
    try:
        cwd, target = Path.cwd().resolve(), p.resolve()
    except (OSError, RuntimeError):  # no current directory, or a symlink loop: not it
        cwd = target = None
    if cwd is not None and (target == cwd or target in cwd.parents):  # replaced as a whole
        raise ModelDirError(f"output directory {p} is the current directory or holds it; "
                            "name a directory below it (e.g. runs/NAME)")
    if p.is_dir() and any(p.iterdir()):
        if not overwrite:
            raise ModelDirError(f"output directory {p} already exists and is not empty; "
                                "choose another or allow overwriting (--overwrite, "
                                "overwrite=True)")
        if not (p / marker).is_file():
            raise ModelDirError(f"will not overwrite {p}: it is not a tsformer {kind} "
                                f"(no {marker}), and overwriting replaces the "
                                "whole directory; choose another")
    return p


def _stale_temp_dirs(final: Path) -> list[Path]:
    """Temporary siblings left by runs that died while saving (``.NAME.tmp-PID-*`` whose
    process no longer exists)."""
    stale = []
    for q in final.parent.glob(f".{final.name}.*-*-*"):
        kind, _, rest = q.name[len(final.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("tmp", "old") and pid.isdigit() and not _alive(int(pid)):
            stale.append(q)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def write_dir_atomic(path: str | os.PathLike, files: dict[str, FileContent],
                     overwrite: bool = False, **kind: str) -> Path:
    """Write ``files`` (name -> text, bytes, or a writer taking the target path) as one unit.

    Written into ``.NAME.tmp-PID-*`` beside the target and renamed into place; such
    directories left by a process that died (SIGKILL, power loss) are removed here.
    ``kind`` (``marker=``, ``kind=``) is passed to :func:`check_writable_target`."""
    final = check_writable_target(path, overwrite, **kind)
    final.parent.mkdir(parents=True, exist_ok=True)
    for q in _stale_temp_dirs(final):
        shutil.rmtree(q, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    try:
        mask = _umask()
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700: give it a directory's usual mode
        for name, content in files.items():
            target = tmp / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            elif isinstance(content, str):
                target.write_text(content, encoding="utf-8")
            else:
                content(target)
            os.chmod(target, 0o666 & ~mask)  # safetensors writes 0600: a file's usual mode
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-{os.getpid()}-",
                                        dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Exception):  # e.g. the disk filled up (OSError, SafetensorError)
            why = getattr(e, "strerror", None) or str(e).splitlines()[0][:200] or type(e).__name__
            raise ModelDirError(f"cannot write {final} ({why}); nothing was left "
                                "behind") from None
        raise
    return final


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def config_json(cfg: RunConfig, model: nn.Module | None = None) -> str:
    """The text of ``config.json``: the run config, with the parameter count for people."""
    d = cfg.to_dict()
    if model is not None:
        d["n_parameters"] = count_parameters(model)
    return json.dumps(d, indent=2) + "\n"


def save_model_dir(
    path: str | os.PathLike, model: nn.Module, cfg: RunConfig, *,
    card: str | None = None, extra_files: dict[str, FileContent] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save ``model`` with its config, card and any extra files, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    files: dict[str, FileContent] = {
        CONFIG_NAME: config_json(cfg, model),
        WEIGHTS_NAME: lambda p: save_file(state, str(p), metadata={"format": "pt"}),
        CARD_NAME: card if card is not None else model_card(cfg, count_parameters(model)),
    }
    files.update(extra_files or {})
    return write_dir_atomic(path, files, overwrite=overwrite)


def write_config(path: str | os.PathLike, cfg: RunConfig, model: nn.Module | None = None
                 ) -> Path:
    """Replace the config.json of model directory ``path`` atomically (a temporary sibling
    renamed into place): for changes that leave the weights as they are (calibration)."""
    target = Path(path) / CONFIG_NAME
    if not target.is_file():
        raise ModelDirError(f"{path} has no {CONFIG_NAME}; is it a tsformer model directory?")
    tmp = target.with_name(f".{CONFIG_NAME}.tmp-{os.getpid()}")
    try:
        tmp.write_text(config_json(cfg, model), encoding="utf-8")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ModelDirError(f"cannot write {target} ({e.strerror or e}); it was left as it "
                            "was") from None
    return target


def read_json_bounded(path: Path, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """JSON from a file of bounded size; any fault is one ModelDirError line."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ModelDirError(f"{path} is {size:,} bytes, over the {max_bytes:,}-byte limit "
                                f"for {what}; the directory is corrupt")
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ModelDirError(f"{path} is not valid JSON ({first}); the directory is corrupt"
                            ) from None
    except OSError as e:
        raise ModelDirError(f"cannot read {path} ({e.strerror or e})") from None


def read_config(path: str | os.PathLike) -> RunConfig:
    """The validated config of a model directory."""
    p = Path(path)
    if not p.exists():
        raise ModelDirError(f"model directory {p} does not exist")
    if not p.is_dir():
        raise ModelDirError(f"{p} is not a model directory (expected a folder with {CONFIG_NAME})")
    cfg_path = p / CONFIG_NAME
    if not cfg_path.is_file():
        raise ModelDirError(f"{p} has no {CONFIG_NAME}; is it a tsformer model directory?")
    doc = read_json_bounded(cfg_path, "a config")
    try:
        return RunConfig.from_dict(doc)
    except ConfigError as e:
        raise ModelDirError(f"{cfg_path}: {e}") from None


def load_model_dir(path: str | os.PathLike, *, device: str | torch.device = "cpu"
                   ) -> tuple[nn.Module, RunConfig]:
    """Model (in eval mode) and config from a directory written by :func:`save_model_dir`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    cfg = read_config(p)
    weights = p / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelDirError(f"{p} has no {WEIGHTS_NAME}; the directory is incomplete")
    try:
        model = cfg.build()
    except (ConfigError, ValueError, RuntimeError) as e:
        raise ModelDirError(f"{p / CONFIG_NAME} does not describe a buildable model: {e}"
                            ) from None
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelDirError(f"{weights} is corrupt or not a safetensors file ({e})") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:  # else every prediction is NaN and the refusal would blame the input series
        raise ModelDirError(f"{weights} holds non-finite weights (NaN or infinity) in "
                            f"{bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}; "
                            "the file is damaged: save or train the model again")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ModelDirError(f"{weights} does not match config.json ({first})") from None
    return model.to(device).eval(), cfg


def read_history(path: str | os.PathLike) -> History:
    """The training history saved in a run directory (one network's: an ensemble's
    ``history.csv`` has a member column), or an empty one; never an error, it is
    informational."""
    p = Path(path)
    hist = History()
    try:
        lines = (p / "history.csv").read_text(encoding="utf-8").splitlines()
        if len(lines) > 1 and not lines[0].startswith("member"):
            keys = lines[0].split(",")
            hist.rows = [dict(zip(keys, (float(v) for v in line.split(",")), strict=True))
                         for line in lines[1:] if line]
        metrics = read_json_bounded(p / "metrics.json", "metrics")
        best = metrics.get("best_epoch")
        hist.best_epoch = int(best) if isinstance(best, int) and 0 < best <= len(hist.rows) \
            else None
        hist.stopped_early = bool(metrics.get("stopped_early", False))
        hist.interrupted = bool(metrics.get("interrupted", False))
    except (OSError, ValueError, AttributeError, UnicodeDecodeError, ModelDirError):
        pass
    return hist


def demo_sample(X_test: Any, y_test: Any, n: int = 8, *, split: str = "test") -> str:
    """``sample.json``: ``n`` series of the test split for the demo page, picked round-robin
    over the classes, so the first examples already show every class ``n`` allows.  Values
    keep 9 significant digits, which round-trips float32 exactly."""
    X = np.asarray(X_test, dtype=np.float32)
    if X.ndim == 2:
        X = X[:, None, :]
    y = np.asarray(y_test)
    if X.ndim != 3 or len(X) != len(y):
        raise DataError(f"a demo sample needs X (n, channels, points) and one label per "
                        f"series; got X {X.shape} and {len(y)} labels")
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(y.tolist()):
        by_class.setdefault(str(label), []).append(i)
    picked: list[int] = []
    queues = [list(reversed(v)) for v in by_class.values()]
    while len(picked) < min(n, len(y)) and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop())
    doc = {
        "format": "tsformer-sample", "split": split,
        "labels": [y[i].item() if hasattr(y[i], "item") else y[i] for i in picked],
        "series": [[[float(f"{v:.9g}") for v in ch] for ch in X[i].tolist()] for i in picked],
    }
    return json.dumps(doc, separators=(",", ":")) + "\n"


def model_card(cfg: RunConfig, n_parameters: int | None = None,
               metrics: dict[str, Any] | None = None) -> str:
    """A README model card: what the model is, what it was trained on, how well, how to load."""
    data = cfg.data
    norm = ("per-series z-normalisation inside the model" if
            cfg.model.to_dict().get("instance_norm") else "none inside the model")
    ensemble = f", a deep ensemble of {cfg.members} networks" if cfg.members > 1 else ""
    lines = [
        "---",
        "library_name: tsformer",
        "tags: [time-series-classification, transformer, tsformer]",
        "---",
        "",
        f"# tsformer `{cfg.preset}` model" + (f" on {data['name']}" if data.get("name") else ""),
        "",
        "A transformer classifier for time series, trained with "
        "[tsformer](https://pypi.org/project/tsformer/).",
        "",
        "## Data",
        f"- dataset: {data.get('name', 'user data')} ({data.get('source', 'unknown source')})",
        f"- input: {cfg.n_channels} channel(s) x {cfg.n_timepoints} time points, "
        "layout `(n_cases, n_channels, n_timepoints)`",
        f"- classes: {', '.join(str(c) for c in cfg.classes)}",
        f"- normalisation: {norm}",
        "",
        "## Model",
        f"- preset `{cfg.preset}`, architecture `{cfg.arch}`{ensemble}",
        f"- options: `{json.dumps(cfg.model.to_dict())}`",
        f"- parameters: {n_parameters if n_parameters is not None else 'n/a'}",
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
        "Classifying series shaped and prepared like the training data. Not validated for",
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
