"""Settings: presets, coercion, validation messages."""

import pytest

from nbasync.config import ConfigError, TrainConfig, build_config, load_toml


def test_paper_defaults():
    assert TrainConfig().grad_clip == 40.0 and TrainConfig().lr == 7e-4


def test_classic_preset_and_paper_defaults():
    c = build_config({"algo": "nstep_q", "grad_clip": 40})
    assert c.env == "CartPole-v1" and c.network == "auto"  # the MLP for vector observations
    assert (c.t_max, c.gamma, c.rmsprop_alpha, c.rmsprop_eps, c.grad_clip) == (
        5,
        0.99,
        0.99,
        0.1,
        40.0,
    )
    assert c.final_epsilons == (0.1, 0.01, 0.5)


FRAMES_PER_STEP = 4  # Atari action repeat


def test_atari_preset_uses_paper_settings():
    c = build_config({"algo": "nstep_q", "env": "ALE/Pong-v5"})
    assert c.network == "atari" and c.clip_rewards
    # Measured on Pong (docs/results/README.md), not the paper's eps 0.1 / lr ~7e-4.
    assert (c.lr, c.rmsprop_eps) == (1e-4, 1e-5)
    # The paper counts these in frames: target copy every 40,000, epsilon over 4M.
    assert c.target_interval * FRAMES_PER_STEP == 40_000
    assert c.epsilon_anneal_steps * FRAMES_PER_STEP == 4_000_000


def test_racing_preset_for_carracing_ids_merges_env_kwargs_key_by_key():
    from nbasync.config import build_config_explained, merge_env_kwargs

    c = build_config({"algo": "a3c", "env": "CarRacing-v3"})
    assert c.preset == "auto" and c.network == "atari" and not c.clip_rewards and c.return_norm
    assert c.env_kwargs == "action_repeat=4,image_grey=true,image_size=84,frame_stack=4"
    c, sources = build_config_explained(
        {}, {"env": "CarRacing-v3", "env_kwargs": "continuous=false,frame_stack=2"}
    )
    assert (
        c.env_kwargs
        == "action_repeat=4,image_grey=true,image_size=84,frame_stack=2,continuous=false"
    )
    assert sources["env_kwargs"] == "preset racing + command line"
    assert sources["clip_rewards"] == "preset racing"
    # Without a preset's env_kwargs the command line's stand alone, as before.
    c, sources = build_config_explained({}, {"env_kwargs": "sutton_barto_reward=true"})
    assert c.env_kwargs == "sutton_barto_reward=true" and sources["env_kwargs"] == "command line"
    assert merge_env_kwargs("a=1,b=2", "b=3,c=4") == "a=1,b=3,c=4"
    # Malformed text is passed on unmerged, so validation names it (bad-inputs table).
    assert merge_env_kwargs("a=1", "a=2,a=3") == "a=2,a=3"
    assert merge_env_kwargs("a=1", "oops") == "oops"


def test_help_says_which_defaults_are_not_the_papers():
    from nbasync.cli import train_parser

    text = " ".join(train_parser().format_help().split())
    assert "LogUniform(1e-4, 1e-2)" in text and "not a value the paper states" in text
    assert "the paper does not state gradient clipping" in text
    assert "40,000 frames are 10,000 agent steps" in text


def test_explicit_settings_override_preset():
    c = build_config({"algo": "a3c", "lr": "0.005", "hidden": "32,16", "anneal_lr": "false"})
    assert c.lr == 0.005 and c.hidden == (32, 16) and c.anneal_lr is False


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"algo": "dqn"}, "--algo: unknown algorithm 'dqn'"),
        ({"t_max": 0}, "--t-max: must be at least 1"),
        ({"workers": "0"}, "--workers: must be at least 1"),
        ({"lr": -1}, "--lr: must be a positive number"),
        ({"gamma": 1.5}, "--gamma: must be in [0, 1]"),
        ({"workers": "two"}, "--workers: invalid value 'two'"),
        ({"optimizer": "adam"}, "--optimizer: unknown optimizer 'adam'"),
        ({"final_epsilon_probs": "0.5,0.5,0.5"}, "--final-epsilon-probs"),
        ({"bogus": 1}, "unknown setting 'bogus'"),
    ],
)
def test_bad_settings_give_one_line_errors(settings, message):
    with pytest.raises(ConfigError) as info:
        build_config(settings)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_toml_presets(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('algo = "onestep_q"\nlr = 0.002\nhidden = [32, 32]\nt-max = 8\n')
    c = build_config(load_toml(f))
    assert (c.algo, c.lr, c.hidden, c.t_max) == ("onestep_q", 0.002, (32, 32), 8)
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'nonsense'"):
        load_toml(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("algo = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(broken)


def test_round_trip_through_dict():
    c = build_config({"algo": "a3c", "hidden": (8, 8)})
    assert TrainConfig.from_dict(c.to_dict()) == c


def test_each_setting_knows_where_it_came_from(tmp_path):
    from nbasync.config import build_config_explained, explain_settings

    config, sources = build_config_explained(
        {"lr": 3e-3, "t_max": 20, "env": "ALE/Pong-v5"}, {"t_max": 10, "seed": 4}, "config file x"
    )
    assert (config.t_max, config.lr, config.seed) == (10, 3e-3, 4)
    assert sources["t_max"] == "command line"  # the command line beats the file
    assert sources["seed"] == "command line"
    assert sources["lr"] == "config file x"  # the file beats the preset
    assert sources["env"] == "config file x"
    assert sources["steps"] == "preset atari" and config.steps == 20_000_000
    assert sources["gamma"] == "default"
    line = explain_settings(config, sources)
    assert "\n" not in line and "command line: seed=4 t_max=10" in line
    assert "preset atari: steps=20000000" in line and "gamma" not in line
    table = explain_settings(config, sources, everything=True)
    assert len(table.splitlines()) == len(config.to_dict())
    assert any(row.split() == ["gamma", "0.99", "default"] for row in table.splitlines())


def test_help_shows_the_values_the_preset_will_really_use():
    from nbasync.cli import _effective_for_help, train_parser

    def help_of(argv):
        return " ".join(train_parser(_effective_for_help(argv)).format_help().split())

    classic = help_of([])  # the default env, CartPole-v1: preset classic
    assert "preset classic applied" in classic
    assert "(default: 0.0, from preset classic)" in classic  # grad clip, not the field's 40
    pong = help_of(["--env", "ALE/Pong-v5"])
    assert "(default: 20000000, from preset atari)" in pong
    assert "(default: 40.0)" in pong  # grad clip: the field's default, no preset
    assert help_of(["--env", "ALE/Pong-v5", "--preset", "classic"]).count("preset atari") == 0


def test_a_preset_value_can_depend_on_the_algorithm():
    """The classic preset scales returns for A3C only (measured: it hurt n-step Q)."""
    from nbasync.cli import _effective_for_help, train_parser
    from nbasync.config import PRESETS, ByAlgo, build_config_explained, preset_for

    assert isinstance(PRESETS["classic"]["return_norm"], ByAlgo)
    for algo in ("a3c", "a3c_gae"):  # by the head: every actor-critic
        assert preset_for("CartPole-v1", "auto", algo)["return_norm"] is True
    by_name = ByAlgo({"a3c_gae": 1, "policy_value": 2}, otherwise=3)
    assert [by_name.for_algo(a) for a in ("a3c_gae", "a3c", "nstep_q", "nope")] == [1, 2, 3, 3]
    for algo in ("nstep_q", "onestep_q", "onestep_sarsa"):
        c, sources = build_config_explained({}, {"algo": algo})
        assert not c.return_norm and sources["return_norm"] == f"preset classic for {algo}"
        assert sources["lr"] == "preset classic"  # values for every algorithm: as before
    c, sources = build_config_explained({}, {})  # the default algo, a3c
    assert c.return_norm and sources["return_norm"] == "preset classic for a3c"
    c, sources = build_config_explained({"return_norm": True}, {"algo": "nstep_q"}, "f.toml")
    assert c.return_norm and sources["return_norm"] == "f.toml"  # explicit settings win
    # Another preset's plain value stays the same for every algorithm.
    assert build_config({"algo": "nstep_q", "env": "CarRacing-v3"}).return_norm

    def help_of(argv):
        return " ".join(train_parser(_effective_for_help(argv)).format_help().split())

    assert "(default: on, from preset classic for a3c)" in help_of([])
    nstep = help_of(["--algo", "nstep_q"])
    assert "(default: off, from preset classic for nstep_q)" in nstep
    assert "--env CartPole-v1 --algo nstep_q takes" in nstep


def test_env_kwargs_parse_to_python_values():
    from nbasync.config import parse_env_kwargs

    assert parse_env_kwargs("") == {}
    assert parse_env_kwargs("continuous=false, lap_complete_percent=0.9,size=64,mode=hard") == {
        "continuous": False,
        "lap_complete_percent": 0.9,
        "size": 64,
        "mode": "hard",
    }
    assert parse_env_kwargs("flag=True")["flag"] is True
    for bad in ("x", "=1", "x=", "1x=2", "a=1,a=2"):
        with pytest.raises(ConfigError, match="--env-kwargs"):
            parse_env_kwargs(bad)


def test_resume_rules_live_in_config():
    """What a resumed run may change: RESUMABLE settings; another setting only to its own
    value; a setting the run file predates only to its default."""
    from nbasync.config import RESUMABLE, may_differ_on_resume, resumed_settings

    stored = build_config({"algo": "a3c"}).to_dict()
    del stored["gae_lambda"]  # a run file from before --gae-lambda existed
    merged = resumed_settings(stored, {"steps": 10**6, "workers": 4, "lr": stored["lr"]})
    assert (merged["steps"], merged["workers"], merged["lr"]) == (10**6, 4, stored["lr"])
    assert "gae_lambda" not in resumed_settings(stored, {"gae_lambda": "1"})  # = default: ok
    with pytest.raises(ConfigError, match="--lr: cannot change lr when resuming"):
        resumed_settings(stored, {"lr": stored["lr"] * 2})
    with pytest.raises(ConfigError, match="cannot change gae_lambda .*has 1.0"):
        resumed_settings(stored, {"gae_lambda": 0.5})
    skipped = may_differ_on_resume(stored)
    assert skipped >= RESUMABLE and "gae_lambda" in skipped and "lr" not in skipped
    assert build_config(resumed_settings(stored, {})).gae_lambda == 1.0


def test_env_kwargs_reach_the_environment():
    from nbasync.build import env_options, make_environment

    config = build_config({"env": "Pendulum-v1", "env_kwargs": "g=5.0"})
    assert env_options(config) == {"g": 5.0}
    env, _ = make_environment(config, seed=0, continuous_ok=True)
    assert env.unwrapped.g == 5.0
    env.close()
    atari = build_config({"env": "ALE/Pong-v5", "env_kwargs": "noop_max=7"})
    assert env_options(atari) == {"noop_max": 7, "terminal_on_life_loss": False}
