"""Snakemake `--config` overrides: values read as YAML, dotted keys as paths, benchmark sections applied
to every benchmark in `run`, and errors that name the override (lffood.config.apply_overrides). The
last tests go through Snakemake itself (dry runs on the micro configuration)."""

import copy

import pytest

from conftest import MICRO, REPO, SCHEMA, job_counts, snakemake
from lffood.config import Overrides, apply_overrides, full_schema, load_yaml, validate_config, yaml_value
from lffood.errors import ConfigError


def _cfg(run=("a",)):
    bench = {"dataset": {"source": "embedded", "ood_sets": ["far"]}, "lff": {"delta": 0.1, "mu": 1.0, "lambda": 0.2}}
    return {"run": list(run), "suites": {"both": ["a", "b"]},
            "benchmarks": {"a": copy.deepcopy(bench), "b": copy.deepcopy(bench)}}


def _error(cfg, overrides, args=None) -> str:
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg, SCHEMA, overrides=Overrides(overrides, args))
    return str(exc.value)


@pytest.mark.parametrize("raw,value", [
    ("0", 0), ("-3", -3), ("0.5", 0.5), (".5", 0.5), ("1e-3", 0.001), ("+2.5E2", 250.0),
    ("true", True), ("False", False), ("null", None), ("~", None), ("", None),
    (["0"], [0]), (["0", "1"], [0, 1]), ({"lambda": "0.5", "delta": "1e-2"}, {"lambda": 0.5, "delta": 0.01}),
    ("[0, 1]", [0, 1]), ("{a: [1, x], b: {c: null}}", {"a": [1, "x"], "b": {"c": None}}),
    # strings that are not YAML 1.2 literals stay strings
    ("cpu", "cpu"), ("paper", "paper"), ("yes", "yes"), ("off", "off"), ("2024-01-01", "2024-01-01"),
    ("a: b", "a: b"), ("1.2.3", "1.2.3"), ("[unclosed", "[unclosed"), ("resources/data", "resources/data"),
    # what Snakemake already parsed stays as it is
    (0.5, 0.5), (3, 3), (True, True), (None, None),
])
def test_yaml_value(raw, value):
    out = yaml_value(raw)
    assert out == value and type(out) is type(value)


def test_snakemake_parses_config_values_as_strings():
    """Why yaml_value exists: Snakemake 9 keeps every value inside a list or mapping a string, and its
    command line refuses dotted keys before the workflow is read (README "Configuration")."""
    from snakemake.cli import parse_config

    assert parse_config(["seeds=[0]", "lff={lambda: 0.5}", "device=cpu", "run=paper", "xx=0.5"]) == {
        "seeds": ["0"], "lff": {"lambda": "0.5"}, "device": "cpu", "run": "paper", "xx": 0.5}
    with pytest.raises(ValueError, match="valid identifier"):
        parse_config(["lff.lambda=0.5"])
    with pytest.raises(ValueError, match="name=value"):  # a target after --config is read as an override
        parse_config(["seeds=[0]", "all"])


def test_list_and_number_overrides_validate():
    """The README's own example and its siblings, as Snakemake hands them over."""
    out = validate_config(_cfg(), SCHEMA, overrides={"seeds": ["0"], "device": "cpu",
                                                     "benchmarks": {"a": {"finetune": {"lr": "1e-3"}}}})
    assert out["benchmarks"]["a"]["seeds"] == [0] and out["device"] == "cpu" and "seeds" not in out
    assert out["benchmarks"]["b"]["seeds"] == [0, 1, 2]  # not in `run`: the schema's default
    assert out["benchmarks"]["a"]["finetune"]["lr"] == 0.001
    assert out["benchmarks"]["a"]["finetune"]["epochs"] == 30  # a mapping is merged: the rest is kept


def test_a_benchmark_section_applies_to_every_benchmark_in_run():
    out = validate_config(_cfg(run=["a", "b"]), SCHEMA, overrides={"lff": {"lambda": "0.5"}})
    for b in ("a", "b"):
        assert out["benchmarks"][b]["lff"] == {"delta": 0.1, "mu": 1.0, "lambda": 0.5}
    out = validate_config(_cfg(run=["a"]), SCHEMA, overrides={"lff": {"lambda": "0.5"}})
    assert out["benchmarks"]["a"]["lff"]["lambda"] == 0.5 and out["benchmarks"]["b"]["lff"]["lambda"] == 0.2
    # `run` overridden at the same time (a suite name) decides where it goes
    out = validate_config(_cfg(run=["a"]), SCHEMA, overrides={"run": "both", "finetune": {"epochs": "20"}})
    assert out["run"] == ["a", "b"]
    assert [out["benchmarks"][b]["finetune"]["epochs"] for b in "ab"] == [20, 20]
    # an objective's section (added to the schema from the registry) counts as a benchmark section
    out = validate_config(_cfg(run=["b"]), SCHEMA, overrides={"ssod": {"gamma": "0.99"}})
    assert out["benchmarks"]["b"]["ssod"]["gamma"] == 0.99 and out["benchmarks"]["a"]["ssod"]["gamma"] == 0.95


def test_run_paper_on_the_shipped_config():
    """`--config run=paper` (README "The paper's benchmarks"; its dry run: tests/workflow/test_paper_targets.py),
    with a benchmark section that then applies to the five paper benchmarks and not to the embedded one."""
    cfg = load_yaml(REPO / "config.yaml")
    out = validate_config(cfg, SCHEMA, overrides=Overrides({"run": "paper", "finetune": {"epochs": "20"}},
                                                           ["run=paper", "finetune={epochs: 20}"]))
    assert out["run"] == cfg["suites"]["paper"] and len(out["run"]) == 5
    assert {out["benchmarks"][b]["finetune"]["epochs"] for b in out["run"]} == {20}
    assert out["benchmarks"]["embedded"]["finetune"]["epochs"] == 8


def test_dotted_keys_are_paths():
    out = validate_config(_cfg(run=["a", "b"]), SCHEMA,
                          overrides={"benchmarks.b.lff.lambda": 0.5, "lff.delta": "0.3", "downloads.retries": "5"})
    assert out["benchmarks"]["a"]["lff"] == {"delta": 0.3, "mu": 1.0, "lambda": 0.2}
    assert out["benchmarks"]["b"]["lff"] == {"delta": 0.3, "mu": 1.0, "lambda": 0.5}
    assert out["downloads"]["retries"] == 5


def test_overrides_already_merged_by_snakemake_are_laid_on_once():
    """In the Snakefile `config` already holds the overrides as Snakemake merged them (strings, a
    benchmark section at the top level); applying them gives the same result as on the bare file."""
    schema = full_schema(SCHEMA)
    overrides = {"seeds": ["1"], "lff": {"lambda": "0.5"}, "benchmarks": {"a": {"lff": {"mu": "2"}}}}
    merged = _cfg()
    merged.update(seeds=["1"], lff={"lambda": "0.5"})
    merged["benchmarks"]["a"]["lff"]["mu"] = "2"
    from_merged, origins = apply_overrides(merged, overrides, schema)
    from_file, _ = apply_overrides(_cfg(), overrides, schema)
    assert from_merged == from_file and "lff" not in from_merged
    assert from_merged["benchmarks"]["a"]["lff"] == {"delta": 0.1, "mu": 2, "lambda": 0.5}
    assert from_merged["benchmarks"]["a"]["seeds"] == [1] and "seeds" not in from_merged
    assert origins == {"benchmarks.a.seeds": "--config seeds=['1']",
                       "benchmarks.a.lff.mu": "--config benchmarks={'a': {'lff': {'mu': '2'}}}",
                       "benchmarks.a.lff.lambda": "--config lff={'lambda': '0.5'}"}


def test_errors_name_the_override_not_the_file():
    msg = _error(_cfg(), {"lff": {"delta": "2"}}, ["lff={delta: 2}"])
    assert msg.startswith("--config lff={delta: 2}: invalid configuration (1 problem(s))")
    assert ("  - --config lff={delta: 2}: key 'benchmarks.a.lff.delta': 2 is greater than or equal to the maximum "
            "of 1.") in msg
    assert "config.yaml" not in msg and "Fix the --config value(s) named above" in msg
    # the dotted form, as the issue spells it
    msg = _error(_cfg(), {"lff.delta": 2.0}, ["lff.delta=2"])
    assert "--config lff.delta=2: key 'benchmarks.a.lff.delta': 2.0 is greater than or equal to the maximum" in msg
    # a semantic problem (run names no suite or benchmark) and a misspelt key
    assert "--config run=nope: key 'run': 'nope' is neither a suite" in _error(_cfg(), {"run": "nope"}, ["run=nope"])
    msg = _error(_cfg(), {"fnetune": {"epochs": "3"}}, ["fnetune={epochs: 3}"])
    assert "--config fnetune={epochs: 3}: key '<top level>': Additional properties are not allowed ('fnetune'" in msg
    assert "applies to every benchmark in 'run'" in msg and "finetune" in msg


def test_cross_key_problems_name_the_override_of_either_key():
    """finetune.epochs=3 makes the file's milestone [15] too late: the override is named."""
    msg = _error(_cfg(), {"finetune": {"epochs": "3"}}, ["finetune={epochs: 3}"])
    assert "--config finetune={epochs: 3}: key 'benchmarks.a.finetune.schedule.milestones': [15] not below" in msg


def test_problems_of_the_file_still_name_the_file():
    cfg = _cfg()
    cfg["benchmarks"]["a"]["lff"]["mu"] = -1.0
    msg = _error(cfg, {"seeds": ["0"], "lff": {"delta": "2"}}, ["seeds=[0]", "lff={delta: 2}"])
    assert msg.startswith("config.yaml + --config seeds=[0] lff={delta: 2}: invalid configuration (2 problem(s))")
    assert "  - key 'benchmarks.a.lff.mu': -1.0 is less than the minimum of 0." in msg
    assert "  - --config lff={delta: 2}: key 'benchmarks.a.lff.delta'" in msg
    assert "and the other keys in config.yaml" in msg
    with pytest.raises(ConfigError, match=r"^config\.yaml: invalid"):  # no overrides: the file, as before
        validate_config(cfg, SCHEMA)


def test_overrides_do_not_change_the_input():
    cfg, overrides = _cfg(), {"lff": {"lambda": "0.5"}, "seeds": ["0"]}
    before = (copy.deepcopy(cfg), copy.deepcopy(overrides))
    validate_config(cfg, SCHEMA, overrides=overrides)
    assert (cfg, overrides) == before


# ----------------------------------------------------------------------------- through Snakemake
def test_numeric_and_list_overrides_reach_the_jobs(tmp_path):
    """`seeds=[0, 1]` and `lff={lambda: 0.5}` as Snakemake users type them. The micro config sweeps
    lff.lambda over [0.2, 0.5] with its LFF variant at 0.2, so the sweep's new point is
    lff_lambda0.5; at lambda 0.5 the LFF variant is that point and 0.2 becomes the new one."""
    proc = snakemake(tmp_path, "-n", "--cores", "1", "results/figures/micro_sensitivity.png",
                     "--config", "seeds=[0, 1]", "lff={lambda: 0.5}", config=MICRO)
    counts = job_counts(proc.stdout)
    # per seed: ce, ce_control, lff, its one new sweep point, ssod and its new sweep point (gamma 0.7)
    assert counts["train"] == 2 * 6, proc.stdout[-3000:]
    assert "results/micro/seed1/models/lff_lambda0.2.pt" in proc.stdout
    assert "lff_lambda0.5" not in proc.stdout
    assert "Config file config.yaml is extended by additional config" in proc.stdout + proc.stderr


def test_readme_override_example(tmp_path):
    """`--config seeds=[0]` (README "Configuration") on the shipped config: one seed instead of two."""
    counts = job_counts(snakemake(tmp_path, "-n", "--cores", "2", "results/tables/embedded.csv",
                                  "--config", "seeds=[0]", config=REPO / "config.yaml").stdout)
    assert counts["train"] == 6 and counts["table"] == 1  # six variants, one seed


def test_bad_override_is_named_before_any_job(tmp_path):
    proc = snakemake(tmp_path, "--cores", "1", "--config", "lff={delta: 2}", "run=[micro]", config=MICRO,
                     check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "--config lff={delta: 2}: key 'benchmarks.micro.lff.delta': 2 is greater than or equal to the maximum" in err
    assert "invalid configuration (1 problem(s))" in err and "config.yaml:" not in err
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


def test_micro_config_is_what_the_workflow_tests_assume():
    cfg = load_yaml(MICRO)
    b = cfg["benchmarks"]["micro"]
    assert b["seeds"] == [0] and b["lff"]["lambda"] == 0.2
    assert b["sweeps"] == [{"variant": "lff", "param": "lambda", "values": [0.2, 0.5]},
                           {"variant": "ssod", "param": "gamma", "values": [0.7, 0.9]}]
    assert b["ssod"]["gamma"] == 0.9  # the SSOD variant is the sweep's 0.9 point


def test_cuda_without_a_gpu_stops_before_any_job(tmp_path, monkeypatch):
    """device: cuda on a host without a visible CUDA device (CUDA_VISIBLE_DEVICES='' hides any GPU):
    the run stops before its first job, so nothing is generated and no output is removed."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    proc = snakemake(tmp_path, "--cores", "1", "results/micro/seed0/models/ce.pt", "--config", "device=cuda",
                     config=MICRO, check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "--config device=cuda: key 'device': 'cuda', but no CUDA device is visible on this host" in err, err[-3000:]
    assert not (tmp_path / "resources").exists()  # prepare_embedded, the first job, never ran


def test_config_files_overlay_one_benchmark_without_leaking_through_a_yaml_anchor(tmp_path):
    """The shipped config shares its variants between benchmarks with a YAML anchor (&methods). A second
    config file that changes one benchmark's variant changes only that benchmark (Snakemake's own merge
    changed every benchmark sharing the anchor)."""
    from lffood.config import load_configfiles

    base = tmp_path / "base.yaml"
    base.write_text("benchmarks:\n  a:\n    variants: &m\n      ssod: {objective: ssod, stage_overrides: {epochs: 3}}\n"
                    "  b:\n    variants: *m\n  c:\n    variants:\n      <<: *m\n")
    over = tmp_path / "over.yaml"
    over.write_text("benchmarks:\n  c:\n    variants:\n      ssod: {stage_overrides: {batch_size: 16}}\n")
    cfg = load_configfiles([base, over])
    assert cfg["benchmarks"]["c"]["variants"]["ssod"] == {"objective": "ssod",
                                                         "stage_overrides": {"epochs": 3, "batch_size": 16}}
    for b in ("a", "b"):
        assert cfg["benchmarks"][b]["variants"]["ssod"]["stage_overrides"] == {"epochs": 3}
