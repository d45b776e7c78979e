"""The command line: bad input ends with one line on stderr and exit code 2, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from nbasync.cli import eval_main, plot_main, train_main


def run_cli(main, args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    return code, err


# -- the table of bad inputs ---------------------------------------------------------------
# Every bad input nbasync handles has a row here: (command, arguments, fragment of the one
# line on stderr). Each must end with exit code 2, exactly one line, no traceback, and leave
# the working directory as it was: nothing created, nothing overwritten. In the arguments,
# {tmp} is the test's directory, {run} a finished CartPole run in it (a checkpoint, no
# training), {toml:<text>} a TOML file with that text.

BAD_INPUTS = [
    # nbasync-train: settings
    ("train", ["--algo", "dqn"], "unknown algorithm 'dqn'"),
    ("train", ["--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    ("train", ["--t-max", "0"], "--t-max"),
    ("train", ["--obs-norm", "--env", "nbasync/Labyrinth-v0"], "--obs-norm: needs vector"),
    ("train", ["--env-kwargs", "continuous"], "--env-kwargs: 'continuous' is not key=value"),
    ("train", ["--env-kwargs", "a=1,a=2"], "--env-kwargs: 'a' given twice"),
    ("train", ["--env-kwargs", "bogus=1"], "unexpected keyword argument 'bogus'"),
    ("train", ["--env-kwargs", "action_repeat=0"], "action_repeat must be a whole number >= 1"),
    ("train", ["--env-kwargs", "one_pedal=1"], "one_pedal must be true or false, got 1"),
    (
        "train",
        ["--algo", "a3c", "--env", "Pendulum-v1", "--env-kwargs", "one_pedal=true"],
        "one_pedal: needs CarRacing's continuous actions",
    ),
    (
        "train",
        ["--env", "CarRacing-v3", "--env-kwargs", "frame_stack=1,frame_stack=2"],
        "--env-kwargs: 'frame_stack' given twice",
    ),
    ("train", ["--env-kwargs", "action_repeat=2.5"], "action_repeat must be a whole number >= 1"),
    ("train", ["--resume", "{run}", "--print-settings"], "--print-settings: not with --resume"),
    ("train", ["--t-max", "2.5"], "--t-max: invalid value '2.5'"),
    ("train", ["--lr", "-0.1"], "--lr"),
    ("train", ["--lr", "nan"], "--lr"),
    ("train", ["--workers", "0"], "--workers"),
    ("train", ["--workers", "1.5"], "--workers: invalid value '1.5'"),
    ("train", ["--workers", "513"], "--workers"),
    ("train", ["--steps", "ten"], "--steps"),
    ("train", ["--steps", "inf"], "--steps: invalid value 'inf'"),
    ("train", ["--steps", "nan"], "--steps: invalid value 'nan'"),
    ("train", ["--steps", "1e99"], "--steps: invalid value '1e99'"),
    ("train", ["--steps", "9223372036854775807"], "--steps: 9223372036854775807 is more than"),
    ("train", ["--seed", "-1"], "--seed: must be in [0,"),
    ("train", ["--gamma", "1.5"], "--gamma"),
    ("train", ["--time-limit", "inf"], "--time-limit"),
    ("train", ["--mean-bound-weight", "-1"], "--mean-bound-weight: must be >= 0, got -1"),
    ("train", ["--mean-bound-weight", "nan"], "--mean-bound-weight: must be >= 0, got nan"),
    ("train", ["--stop-return", "nan"], "--stop-return: must be a number"),
    ("train", ["--init-std", "-0.1"], "--init-std: must be 0 (the plain init) or above 0.01"),
    ("train", ["--init-std", "0.005"], "--init-std: must be 0 (the plain init) or above 0.01"),
    ("train", ["--init-std", "nan"], "--init-std: must be 0 (the plain init) or above 0.01"),
    ("train", ["--init-std", "0.1"], "--init-std: only for continuous actions (a Gaussian"),
    ("train", ["--mean-bound-weight", "1"], "--mean-bound-weight: only for continuous actions"),
    ("train", ["--shared-trunk"], "--shared-trunk: only for continuous actions"),
    ("train", ["--algo", "nstep_q", "--init-std", "0.1"], "CartPole-v1 has discrete actions"),
    ("train", ["--stop-window", "0"], "--stop-window: must be at least 1, got 0"),
    ("train", ["--no-such-flag"], "unrecognized arguments"),
    ("train", ["--algo", "nstep_q", "--env", "Pendulum-v1"], "discrete"),
    ("train", ["--network", "atari"], "--network: atari (the conv net) needs (C, H, W) images"),
    ("train", ["--env", "ALE/Pong-v5", "--network", "mlp"], "--network: mlp needs vector obs"),
    ("train", ["--network", "resnet"], "unknown network 'resnet'"),
    ("train", ["--telemetry-every", "-1"], "--telemetry-every: must be >= 0, got -1"),
    ("train", ["--telemetry-every", "2.5"], "--telemetry-every: invalid value '2.5'"),
    ("train", ["--algo", "a3c_gae", "--gae-lambda", "1.5"], "--gae-lambda: must be in [0, 1]"),
    ("train", ["--algo", "a3c_gae", "--gae-lambda", "nan"], "--gae-lambda: must be in [0, 1]"),
    ("train", ["--gae-lambda", "0.9"], "--gae-lambda: a3c does not use it (only a3c_gae"),
    ("train", ["--dueling"], "--dueling: a3c does not use it (only onestep_q,"),
    ("train", ["--algo", "a3c_gae", "--dueling"], "--dueling: a3c_gae does not use it"),
    ("train", ["--algo", "nstep_q", "--recurrent"], "--recurrent: only a3c, a3c_gae have"),
    # nbasync-train: config files
    ("train", ["--config", "/nonexistent/x.toml"], "config file not found"),
    ("train", ["--config", "{toml:workers = true}"], "--workers: invalid value True"),
    ("train", ["--config", "{toml:t_max = 2.5}"], "--t-max: invalid value 2.5"),
    ("train", ["--config", "{toml:nonsense = 1}"], "unknown setting 'nonsense'"),
    ("train", ["--config", "{toml:algo = }"], "not valid TOML"),
    # nbasync-train: run directories
    ("train", ["--resume", "/nonexistent/run"], "no run file"),
    ("train", ["--out", "{run}", "--steps", "100"], "a run file already exists"),
    ("train", ["--resume", "{run}", "--lr", "0.5"], "cannot change lr"),
    ("train", ["--resume", "{run}", "--algo", "a3c_gae"], "cannot change algo"),
    ("train", ["--resume", "{run}", "--gae-lambda", "0.5"], "cannot change gae_lambda"),
    ("train", ["--resume", "{run}", "--shared-trunk"], "cannot change shared_trunk"),
    ("train", ["--resume", "{run}"], "already at step"),
    ("train", ["--resume", "{run}", "--steps", "200", "--time-limit", "20"], "trained for 30 s"),
    ("train", ["--out", "{tmp}/blocker/run", "--steps", "10"], "cannot create run directory"),
    # nbasync-eval
    ("eval", ["{tmp}/missing"], "no run file"),
    ("eval", ["{tmp}/corrupt"], "cannot read run file"),
    ("eval", ["{run}", "--episodes", "0"], "--episodes must be at least 1"),
    ("eval", ["{run}", "--epsilon", "2"], "--epsilon must be in [0, 1], got 2.0"),
    ("eval", ["{run}", "--epsilon", "nan"], "--epsilon must be in [0, 1], got nan"),
    ("eval", ["{run}", "--epsilon", "-0.1"], "--epsilon must be in [0, 1]"),
    # nbasync-plot
    ("plot", ["{tmp}/missing", "-o", "{tmp}/c.png"], "no run file"),
    ("plot", ["{run}", "--window", "0", "-o", "{tmp}/c.png"], "--window must be"),
    ("plot", ["{run}", "--window", "-3", "-o", "{tmp}/c.png"], "--window must be"),
    ("plot", ["{run}", "-o", "{tmp}/x.txt"], "cannot write a .txt file"),
    ("plot", ["{run}", "--baseline", "random=1.4", "-o", "{tmp}/c.png"], "--baseline: expected"),
    ("plot", ["{run}", "--baseline", "inf=top", "-o", "{tmp}/c.png"], "--baseline: the return"),
    ("plot", ["{run}", "--grads", "-o", "{tmp}/g.png"], "recorded no telemetry"),
]

MAINS = {"train": train_main, "eval": eval_main, "plot": plot_main}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A CartPole run directory with one checkpoint at its full budget (no training)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    _write_stored_run(out, {}, worker_steps=[50, 50], elapsed_s=30.0)
    return out


def _write_stored_run(out: Path, settings: dict, worker_steps: list, elapsed_s: float) -> None:
    """An A3C CartPole run file with ``settings`` and one checkpoint at step 100, as a
    finished (or older) run leaves it, without training."""
    from nbasync.build import POLICY_VALUE, build_network, probe_env
    from nbasync.config import build_config
    from nbasync.runfile import RunFile

    config = build_config({"algo": "a3c", "steps": 100, "out": str(out), **settings})
    net = build_network(config, probe_env(config, True), POLICY_VALUE, max_batch=1)
    net.init_params(0)
    rf = RunFile.create(out, config.to_dict(), net.layout)
    rf.write_checkpoint(100, net.params, worker_steps=worker_steps, elapsed_s=elapsed_s)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _expand(arg: str, tmp: Path, run: Path) -> str:
    if arg.startswith("{toml:"):
        path = tmp / f"settings{abs(hash(arg))}.toml"
        path.write_text(arg[len("{toml:") : -1] + "\n")
        return str(path)
    return arg.replace("{tmp}", str(tmp)).replace("{run}", str(run))


@pytest.mark.parametrize(("command", "args", "fragment"), BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    command, args, fragment, tmp_path, finished_run, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a default out dir would be created under runs/ here
    (tmp_path / "blocker").write_text("x")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "run.h5").write_bytes(b"not an hdf5 file at all" * 10)
    argv = [_expand(a, tmp_path, finished_run) for a in args]
    if command == "train" and "--quiet" not in argv:
        argv.append("--quiet")
    before = _snapshot(tmp_path), _snapshot(finished_run)
    code, err = run_cli(MAINS[command], argv, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert fragment in lines[0]
    assert "Traceback" not in err
    assert (_snapshot(tmp_path), _snapshot(finished_run)) == before


def test_an_old_discrete_run_with_a_gaussian_setting_still_evaluates_and_resumes(tmp_path, capsys):
    """A new run refuses --mean-bound-weight on discrete actions; a run stored before that
    refusal (the setting in its config, unused) must still evaluate and resume."""
    out = tmp_path / "old"
    _write_stored_run(out, {"mean_bound_weight": 1.0}, worker_steps=[100], elapsed_s=1.0)
    code, err = run_cli(eval_main, [str(out), "--episodes", "1"], capsys)
    assert code == 0, err
    code, err = run_cli(train_main, ["--resume", str(out), "--steps", "150", "--quiet"], capsys)
    assert code == 0, err


def test_unwritable_out_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_cli(
        train_main, ["--algo", "a3c", "--steps", "10", "--out", str(blocker / "run")], capsys
    )
    assert code == 2 and "cannot create run directory" in err and len(err.strip().splitlines()) == 1


def test_eval_and_plot_errors(tmp_path, capsys):
    code, err = run_cli(eval_main, [str(tmp_path / "missing")], capsys)
    assert code == 2 and "no run file" in err
    corrupt = tmp_path / "bad"
    corrupt.mkdir()
    (corrupt / "run.h5").write_bytes(b"not an hdf5 file at all" * 10)
    code, err = run_cli(eval_main, [str(corrupt)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, err = run_cli(
        plot_main, [str(tmp_path / "missing"), "-o", str(tmp_path / "c.png")], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1


CONSOLE_SCRIPT = "import sys; from nbasync.cli import train_main; sys.exit(train_main())"


def test_console_script_exit_code():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from nbasync.cli import train_main; sys.exit(train_main())",
            "--algo",
            "nope",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope" in proc.stderr


@pytest.mark.parametrize(
    ("kind", "code", "traceback_shown"),
    [("bug", 1, True), ("input", 2, False), ("failure", 3, False), ("killed", 3, False)],
)
def test_worker_errors_follow_the_exit_code_policy(kind, code, traceback_shown, capsys):
    """A worker's bug shows its traceback; nbasync's own errors and deaths are one line."""
    from nbasync.cli import _run
    from nbasync.runner import WorkerError

    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n'

    def main(argv):
        raise WorkerError(1, 1, "worker 1 raised ValueError: boom", tb, kind)

    assert _run("nbasync-train", main, []) == code
    err = capsys.readouterr().err
    assert ("Traceback" in err) == traceback_shown
    assert err.strip().splitlines()[-1] == "nbasync-train: error: worker 1 raised ValueError: boom"
    if not traceback_shown:
        assert len(err.strip().splitlines()) == 1


def test_divergence_is_a_run_failure_not_bad_input(capsys):
    from nbasync.cli import _run
    from nbasync.errors import DivergedError

    def main(argv):
        raise DivergedError("training diverged at step 5: x")

    assert _run("nbasync-train", main, []) == 3
    assert capsys.readouterr().err == "nbasync-train: error: training diverged at step 5: x\n"


def test_print_settings_lists_every_setting_with_its_source_and_trains_nothing(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text("lr = 0.003\nt_max = 20\n")
    code = train_main(
        ["--env", "ALE/Pong-v5", "--config", str(config), "--t-max", "10", "--print-settings"]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert rows["t_max"] == ["10", "command", "line"]
    assert rows["lr"] == ["0.003", "config", "file", str(config)]
    assert rows["steps"] == ["20000000", "preset", "atari"]
    assert rows["gamma"] == ["0.99", "default"]
    assert list(tmp_path.iterdir()) == [config]  # no run directory


def test_a_run_starts_by_saying_which_settings_are_not_defaults(tmp_path, capsys):
    out = tmp_path / "run"
    code = train_main(["--steps", "300", "--seed", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0
    first = err.splitlines()[0]
    assert first.startswith("settings (") and "command line: steps=300 seed=2" in first
    assert "preset classic: lr=0.001" in first
