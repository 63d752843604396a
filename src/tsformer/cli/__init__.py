"""The ``tsformer`` command: a thin shell over :mod:`tsformer.pipeline`, one module per
subcommand (each with ``add_parser(sub)``; a new command is a module here and a line in
:data:`COMMANDS`).

Every user mistake ends in one line on stderr and exit code 2; nothing half-written is left.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import Any

from ..errors import TsformerError
from .common import Parser, info

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = ("train", "evaluate", "predict", "explain", "calibrate", "summary", "datasets",
            "benchmark", "tune", "serve", "export")


#: Import names of the core dependencies, which a ``pip install --no-deps`` leaves out.
CORE_DEPENDENCIES = ("torch", "sklearn", "safetensors", "matplotlib", "tqdm", "platformdirs")


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = Parser(prog="tsformer", description="Transformer classifiers for time series.")
    parser.add_argument("--version", action="version", version=f"tsformer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f".{name}", __package__).add_parser(sub)
    return parser


def _notes_as_lines(show: Any) -> Any:
    """A ``warnings.showwarning`` that prints the data layer's notes (e.g. unequal-length
    series resampled) as one line each, and leaves other warnings to ``show``."""
    from ..data import ResampledWarning

    def note(message: Any, category: type[Warning], *rest: Any, **kw: Any) -> None:
        # The pipeline (and torch) only when a command loaded it: predict --runtime onnx
        # runs without torch.
        pipeline = sys.modules.get(f"{__package__.rpartition('.')[0]}.pipeline")
        kinds = (ResampledWarning, *([pipeline.NotNormalizedWarning] if pipeline else []))
        if issubclass(category, kinds):
            info(f"tsformer: note: {message}")
        else:
            show(message, category, *rest, **kw)

    return note


def _terminate(_signum: int, _frame: Any) -> None:
    """SIGTERM (timeout, job schedulers, docker stop) stops a command as Ctrl-C does: a
    training run keeps its best model so far."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    for name in ("stdout", "stderr"):  # started with a stream closed (cmd >&-): write nowhere
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    previous_int = signal.getsignal(signal.SIGINT) if in_main_thread else None
    try:
        args = build_parser().parse_args(argv)
        with warnings.catch_warnings():  # restores the filters and showwarning after
            from ..data import ResampledWarning

            warnings.simplefilter("always", ResampledWarning)  # once per file, not per place
            warnings.showwarning = _notes_as_lines(warnings.showwarning)
            return int(args.func(args) or 0)
    except TsformerError as e:
        print(f"tsformer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tsformer: error: interrupted", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except ModuleNotFoundError as e:  # a --no-deps install (ONNX predictions only)
        if (e.name or "").split(".")[0] not in CORE_DEPENDENCIES:
            raise
        print(f"tsformer: error: this command needs {e.name.split('.')[0]}, a dependency this "
              "installation lacks (without them only 'predict --runtime onnx' works); "
              "install tsformer with its dependencies: pip install tsformer", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the output's disk is full (> /dev/full): one line, not a trace
        where = f" {e.filename}" if getattr(e, "filename", None) else " the output"
        print(f"tsformer: error: cannot write{where} ({e.strerror or e})", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:  # a command may ignore Ctrl-C while it saves
            signal.signal(signal.SIGINT, previous_int)
