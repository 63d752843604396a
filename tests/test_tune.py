"""``tsformer tune``: search spaces as data, pruning, shared studies, and the preset round trip."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest

from tsformer import register_preset, registry, tune
from tsformer.cli import main
from tsformer.errors import ConfigError

TINY_MODEL = {"head_size": 4, "num_heads": 1, "ff_dim": 4, "num_blocks": 1, "mlp_units": [8],
              "dropout": 0.0, "mlp_dropout": 0.0}
TINY_SPACE = {
    "model": {"num_heads": {"type": "categorical", "choices": [1, 2]},
              "dropout": {"type": "float", "low": 0.0, "high": 0.3}},
    "train": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
              "batch_size": {"type": "categorical", "choices": [8, 16]}},
}
# A worker process: registers the tiny preset and its space (as a preset author would), then
# runs the real command line.
WORKER = textwrap.dedent(f"""
    import sys
    from tsformer import cli, register_preset, tune
    register_preset("tune_tiny", arch="seed_transformer", model={TINY_MODEL!r},
                    train={{"epochs": 5}})
    tune.SEARCH_SPACES["tune_tiny"] = {TINY_SPACE!r}
    raise SystemExit(cli.main(sys.argv[1:]))
""")


@pytest.fixture
def tiny_preset() -> Iterator[str]:
    register_preset("tune_tiny", arch="seed_transformer", model=TINY_MODEL, train={"epochs": 5})
    tune.SEARCH_SPACES["tune_tiny"] = TINY_SPACE
    yield "tune_tiny"
    registry.PRESETS.pop("tune_tiny", None)
    tune.SEARCH_SPACES.pop("tune_tiny", None)


def _train_file(d: Path, n: int = 40) -> Path:
    """Training data only: no test file exists, so tuning cannot be reading one."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    t = np.linspace(0, 6, 16)
    X = np.sin(t[None] * (1 + y[:, None])) + 0.3 * rng.standard_normal((n, 16))
    path = d / "Tiny_TRAIN.tsv"
    np.savetxt(path, np.column_stack([y, X]), delimiter="\t", fmt="%.5f")
    return path


def test_search_spaces_are_checked_data(tiny_preset: str) -> None:
    seed = tune.search_space("seed")
    assert {"head_size", "num_heads", "dropout", "mlp_dropout"} <= set(seed["model"])
    assert {"lr", "batch_size"} <= set(seed["train"])
    tune.SEARCH_SPACES.pop(tiny_preset)  # a preset without a declared space: generic training
    assert tune.search_space(tiny_preset) == {"model": {}, "train": tune.GENERIC_TRAIN_SPACE}
    tune.register_search_space(tiny_preset, model={"no_such": {"type": "int", "low": 1,
                                                               "high": 2}})
    with pytest.raises(ConfigError, match="no_such"):
        tune.search_space(tiny_preset)
    tune.register_search_space(tiny_preset, train={"lr": {"type": "float", "low": 0,
                                                          "high": 1, "log": True}})
    with pytest.raises(ConfigError, match="positive"):
        tune.search_space(tiny_preset)


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_pruning_from_epoch_validation_loss(tiny_preset: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 1, 16)).astype(np.float32)
    y = rng.integers(0, 2, 30)
    study = tune.run_tune(X, y, preset=tiny_preset, n_trials=2, epochs=4, device="cpu",
                          storage=f"sqlite:///{tmp_path / 's.db'}", study_name="p",
                          pruner=_AlwaysPrune(), log=lambda s: None)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [1] for t in study.trials)  # stopped at epoch 1
    with pytest.raises(ConfigError, match="no trial"):
        tune.best_config(study, tiny_preset)
    tune.plot_summary(study, tmp_path / "s.png")  # no completed trial: still a plot
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_an_interrupted_trial_does_not_count_toward_the_target(tiny_preset: str,
                                                              tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 1, 16)).astype(np.float32)
    y = rng.integers(0, 2, 30)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="r", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))  # Ctrl-C
    study = tune.run_tune(X, y, preset=tiny_preset, n_trials=2, epochs=1, device="cpu",
                          storage=storage, study_name="r", pruner=optuna.pruners.NopPruner(),
                          log=lambda s: None)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2 and len(states) == 3


#: A PostgreSQL database to run the shared-study test against as well, e.g.
#: ``postgresql+psycopg2://postgres@127.0.0.1:5433/tsformer`` (needs psycopg2); CI has none.
POSTGRES = os.environ.get("TSFORMER_TEST_POSTGRES")


@pytest.mark.slow  # two worker processes: ~30 s on a shared 2-core machine
@pytest.mark.parametrize("backend", [
    "sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
        not POSTGRES, reason="set TSFORMER_TEST_POSTGRES to a PostgreSQL URL"))])
def test_two_workers_share_one_study_and_best_config_trains(
        tiny_preset: str, tmp_path: Path, backend: str) -> None:
    train = _train_file(tmp_path)
    out = tmp_path / "tune"
    cmd = [sys.executable, "-c", WORKER, "tune", "--train", str(train), "--preset", tiny_preset,
           "--trials", "6", "--epochs", "1", "--device", "cpu", "--out", str(out)]
    study_name, storage = f"Tiny_TRAIN-{tiny_preset}", f"sqlite:///{out / tune.DEFAULT_DB}"
    if backend == "postgresql":  # a server outlives the test: a study name of its own
        study_name, storage = f"test-{os.getpid()}-{tmp_path.name}", POSTGRES
        cmd += ["--storage", storage, "--study", study_name]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two workers, two cores: no oversubscription
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env) for _ in range(2)]
    results = [w.communicate(timeout=120) for w in workers]
    for w, (_, err) in zip(workers, results, strict=True):
        assert w.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name=study_name, storage=storage)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) and sorted(numbers) == list(range(len(numbers)))
    assert 6 <= len(numbers) <= 7  # the target, give or take a trial started in a race
    assert all(t.state.is_finished() for t in study.trials)
    reported = [int(m) for _, err in results for m in re.findall(r"^trial (\d+):", err, re.M)]
    assert sorted(reported) == numbers  # each trial run by exactly one worker
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"
    assert "number,state,value" in (out / "trials.csv").read_text()

    best = json.loads((out / "best.json").read_text())
    assert set(best) == {"preset", "members", "model", "train"} and best["preset"] == tiny_preset
    assert best["members"] == 1
    assert best["model"]["num_heads"] == study.best_trial.params["num_heads"]
    assert best["train"]["lr"] == study.best_trial.params["lr"]
    assert best["train"]["epochs"] == 5  # the preset's full budget, not the trials' 1
    # the follow-up line each worker prints trains the best configuration on the tuned data
    for stdout, _ in results:
        argv = follow_up(stdout)
        assert f"--train {shlex.quote(str(train))}" in shlex.join(argv)
    run = tmp_path / "run"
    assert main([*follow_up(results[0][0]), "--epochs", "1", "--quiet", "--out", str(run)]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["lr"] == best["train"]["lr"]
    assert saved["model"] == best["model"] and saved["preset"] == tiny_preset
    assert saved["data"] == {"name": "Tiny_TRAIN", "source": "file"}


def follow_up(stdout: str) -> list[str]:
    """The arguments of the ``(tsformer train ...)`` line that ``tune`` prints at its end."""
    found = re.findall(r"\(tsformer (train .*)\)$", stdout, re.M)
    assert len(found) == 1, stdout
    return shlex.split(found[0])


def _tiny_dataset(folder: Path, name: str = "Tiny") -> Path:
    """NAME_TRAIN.tsv / NAME_TEST.tsv in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    train = _train_file(folder)
    train.rename(folder / f"{name}_TRAIN.tsv")
    (folder / f"{name}_TEST.tsv").write_text((folder / f"{name}_TRAIN.tsv").read_text())
    return folder


def _tune_and_paste(argv: list[str], tmp_path: Path, capsys, tiny_preset: str,
                    monkeypatch) -> tuple[list[str], int, str]:
    """Run ``tune`` in-process, then the printed follow-up line from another directory."""
    out = tmp_path / "tune"
    assert main(["tune", *argv, "--preset", tiny_preset, "--trials", "1", "--epochs", "1",
                 "--device", "cpu", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    argv_again = follow_up(stdout)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code = main([*argv_again, "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")])
    return argv_again, code, capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--dataset", "--train"])
def test_follow_up_line_trains_on_the_tuned_data(flag: str, tiny_preset: str, tmp_path: Path,
                                                 capsys, monkeypatch) -> None:
    data = "Chinatown" if flag == "--dataset" else str(_train_file(tmp_path))
    argv, code, err = _tune_and_paste([flag, data], tmp_path, capsys, tiny_preset, monkeypatch)
    assert argv[:3] == ["train", "--config", str(tmp_path / "tune" / "best.json")]
    assert argv[argv.index(flag) + 1] == data and "--full" in argv
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    best = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert saved["preset"] == tiny_preset and saved["model"] == best["model"]
    assert saved["data"]["name"] == ("Chinatown" if flag == "--dataset" else "Tiny_TRAIN")


def test_follow_up_line_for_a_dataset_path_trains_on_it(tiny_preset: str, tmp_path: Path,
                                                        capsys, monkeypatch) -> None:
    data = _tiny_dataset(tmp_path / "data" / "Tiny")
    argv, code, err = _tune_and_paste(["--dataset", str(data)], tmp_path, capsys, tiny_preset,
                                      monkeypatch)
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["name"] == "Tiny"


def test_trials_and_best_config_use_the_data_scaled_defaults(tmp_path: Path,
                                                             monkeypatch) -> None:
    # patchformer on 30 series: its small-data stem, as `train` builds, in one network per
    # trial (members share options); best.json holds the preset's 3 members for that size.
    import tsformer.pipeline as pipeline
    from tsformer.models.patchformer import auto_params
    from tsformer.registry import DataShape

    trained = []
    real = pipeline.train
    monkeypatch.setattr(pipeline, "train",
                        lambda cfg, *a, **k: trained.append(cfg) or real(cfg, *a, **k))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 1, 16)).astype(np.float32)
    y = np.arange(30) % 2
    study = tune.run_tune(X, y, preset="patchformer", n_trials=1, epochs=1, device="cpu",
                          storage=f"sqlite:///{tmp_path / 's.db'}", study_name="pf",
                          log=lambda s: None)
    assert [c.members for c in trained] == [1]
    trial_scaled = auto_params(DataShape(1, 16, 2, 24))  # the 24 series a trial fits on
    assert trained[0].model.stem == trial_scaled["model"]["stem"] == "rocket"
    # a one-epoch trial is a short run: the preset's finish rule drops its augmentation
    assert trial_scaled["train"]["augment"] and trained[0].train.augment == []
    best = tune.best_config(study, "patchformer")
    scaled = auto_params(DataShape(1, 16, 2, 30))
    assert best["members"] == scaled["members"] == 3
    assert best["model"]["stem"] == scaled["model"]["stem"]
    assert best["train"]["epochs"] == scaled["train"]["epochs"]
    assert best["train"]["augment"] == scaled["train"]["augment"]
