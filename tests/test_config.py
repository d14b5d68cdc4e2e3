"""One way to configure: params.yaml -> one dataclass per section -> the stage. Values that would
silently lose data are refused with exit status 2 and a message naming the file, the key, the bad
value and what is allowed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from tasks.config import SECTIONS, Params, ParamsError, load, render_defaults, section_class

ROOT = Path(__file__).resolve().parents[1]


def test_every_section_is_registered_under_its_own_key():
    for key in SECTIONS:
        cls = section_class(key)
        assert issubclass(cls, Params) and cls.SECTION == key
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{key}.{f.name} has no help"


def test_shipped_params_yaml_holds_exactly_the_defaults():
    """The dataclasses are the one place defaults live; params.yaml writes them out."""
    loaded = load(ROOT / "params.yaml", {key: section_class(key) for key in SECTIONS})
    for key, value in loaded.items():
        assert value == section_class(key)(), f"params.yaml's {key} differs from {section_class(key).__name__}()"
    assert yaml.safe_load(render_defaults()) == yaml.safe_load((ROOT / "params.yaml").read_text())


def test_overrides_relative_and_dotted_and_yaml_typed(tmp_path):
    from tasks.envs.params import EnvParams
    from tasks.train.rl.config import RLParams

    path = tmp_path / "p.yaml"
    path.write_text("rl:\n  steps: 3\n")
    got = load(path, {"rl": RLParams, "envs": EnvParams},
               ["lr=1e-5", "betas=[0.8, 0.9]", "algorithms.cispo.eps_high=0.3", "envs.code.timeout_s=2"])
    rl, envs = got["rl"], got["envs"]
    assert (rl.steps, rl.lr, rl.betas, rl.algo.eps_high, envs.code.timeout_s) == (3, 1e-5, (0.8, 0.9), 0.3, 2.0)
    assert rl.algorithms.grpo == RLParams().algorithms.grpo and rl.algorithms.cispo.eps_low == 1.0  # the rest stays


def test_params_objects_validate_when_made_in_code():
    from tasks.train.rl.config import RLParams

    with pytest.raises(ParamsError, match=r"^rl.updates_per_batch = 3: allowed: a divisor of "
                                          r"prompts_per_step = 16 \(minibatches hold whole groups\)$"):
        RLParams(updates_per_batch=3)
    with pytest.raises(ParamsError, match=r"^rl.curriculum\[0\].steps: missing"):
        RLParams.from_mapping({"curriculum": [{"weights": {"arithmetic": 1.0}}]})


def _run(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err.strip()


def _params(tmp_path: Path, **sections) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(sections))
    return str(path)


# (stage, params.yaml contents, --set overrides, the message expected after "error: ")
CASES = [
    ("difficulty", {"difficulty": {"batch_size": -32}}, [],
     "{p}: difficulty.batch_size = -32: allowed: an integer >= 1"),
    ("questions", {"curate": {"questions": {"parse_timeout_s": -1}}}, [],
     "{p}: curate.questions.parse_timeout_s = -1.0: allowed: a number > 0.0"),
    ("clean", {"curate": {"claen": {"chunk_size": 5}}}, [],
     "{p}: curate.claen: unknown section; known here: clean, decontaminate, dedup, questions"),
    ("dedup", {"curate": {"dedup": {"semantic": "no"}}}, [],
     "{p}: curate.dedup.semantic = 'no': allowed: true or false"),
    ("clean", {"curate": {"clean": {"chunk_size": -5}}}, [],
     "{p}: curate.clean.chunk_size = -5: allowed: an integer >= 1"),
    ("rl", {}, ["lr"], "{p}: --set lr: expected KEY=VALUE (a YAML value)"),
    ("rl", {}, ["lr="], "{p}: --set lr=: no value after '='; write KEY=VALUE (a YAML value)"),
    ("rl", {}, ["algorithms.cispo.dynamic_sampling=maybe"],
     "{p}: rl.algorithms.cispo.dynamic_sampling = 'maybe': allowed: true or false"),
    ("rl", {}, ["dynamic_sampling=maybe"], "{p}: rl.dynamic_sampling: unknown key; RLParams knows"),
    ("rl", {}, ["keep_checkpoints=0"], "{p}: rl.keep_checkpoints = 0: allowed: an integer >= 1"),
    ("rl", {}, ["updates_per_batch=0"], "{p}: rl.updates_per_batch = 0: allowed: an integer >= 1"),
    ("rl", {}, ["checkpoint_every=0"], "{p}: rl.checkpoint_every = 0: allowed: an integer >= 1"),
    ("rl", {}, ["betas=[0.9]"],
     "{p}: rl.betas = [0.9]: allowed: a list of exactly 2 values (a number, a number)"),
    ("sft", {"sft": {"batch_size": -4}}, [], "{p}: sft.batch_size = -4: allowed: an integer >= 1"),
    ("sft", {"sft": {"lr": "fast"}}, [], "{p}: sft.lr = 'fast': allowed: a number"),
    ("rl", {"rl": {"algorithm": "ppo"}}, [], "{p}: rl.algorithm = 'ppo': allowed: one of 'cispo', 'grpo', 'dapo'"),
]


def _main(stage: str):
    from tasks.curate import clean, dedup, difficulty, questions
    from tasks.train import sft
    from tasks.train.rl import train

    return {"clean": (clean.main, ["--input", "x.jsonl"]), "dedup": (dedup.main, ["--input", "x", "--sft", "y"]),
            "questions": (questions.main, ["--input", "x.jsonl"]),
            "difficulty": (difficulty.main, ["--math", "x.jsonl", "--synlogic", "s.jsonl", "--bounds", "b.json",
                                             "--policy", "nowhere"]),
            "sft": (sft.main, []), "rl": (train.main, ["--policy", "nowhere", "--data", "nowhere"])}[stage]


@pytest.mark.parametrize("stage, sections, sets, message", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_values_exit_2_naming_file_key_value_and_allowed(tmp_path, capsys, stage, sections, sets, message):
    path = _params(tmp_path, **sections)
    main, args = _main(stage)
    argv = [*args, "--output", str(tmp_path / "out"), "--params", path, *[x for s in sets for x in ("--set", s)]]
    err = _run(main, argv, capsys)
    assert err.startswith("error: " + message.format(p=path)), err
    assert not (tmp_path / "out").exists()


def test_a_missing_params_file_is_refused(tmp_path, capsys):
    main, args = _main("clean")
    err = _run(main, [*args, "--output", str(tmp_path / "o"), "--params", str(tmp_path / "missing.yaml")], capsys)
    assert err == f"error: {tmp_path / 'missing.yaml'}: no such params file"


def test_config_command_checks_shows_and_writes(tmp_path, capsys):
    from tasks import config

    config.main(["--params", str(ROOT / "params.yaml"), "--check"])
    assert capsys.readouterr().out == f"{ROOT / 'params.yaml'}: {len(SECTIONS)} sections valid\n"
    config.main(["--params", str(ROOT / "params.yaml"), "--show", "difficulty"])
    assert "difficulty.k = 10\n    samples per item" in capsys.readouterr().out
    config.main(["--write-defaults", str(tmp_path / "p.yaml")])
    assert (tmp_path / "p.yaml").read_text() == render_defaults()
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl: [1, 2]\n")
    assert _run(config.main, ["--params", str(bad), "--check"], capsys) == \
        f"error: {bad}: rl = [1, 2]: allowed: a mapping of RLParams settings"
