"""The command line: bad input ends with one line on stderr and exit code 2, never a traceback."""

import subprocess
import sys

import pytest

from nbasync.cli import eval_main, plot_main, train_main


def run_cli(main, args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--algo", "dqn"], "unknown algorithm 'dqn'"),
        (["--algo", "a3c", "--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["--algo", "a3c", "--t-max", "0"], "--t-max"),
        (["--algo", "a3c", "--lr", "-0.1"], "--lr"),
        (["--algo", "a3c", "--workers", "0"], "--workers"),
        (["--algo", "a3c", "--steps", "ten"], "--steps"),
        (["--algo", "a3c", "--no-such-flag"], "unrecognized arguments"),
        (["--algo", "nstep_q", "--env", "Pendulum-v1"], "discrete"),
        (["--algo", "a3c", "--config", "/nonexistent/x.toml"], "config file not found"),
        (["--resume", "/nonexistent/run"], "no run file"),
    ],
)
def test_train_bad_input_is_one_line_exit_2(args, fragment, capsys):
    code, err = run_cli(train_main, args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert fragment in lines[0]
    assert "Traceback" not in err


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
