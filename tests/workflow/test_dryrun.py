"""A dry run of every documented target on the shipped config: the job graph must build with no data."""

import pytest

from conftest import REPO, job_counts, snakemake

DOCUMENTED_TARGETS = [
    "all",
    "results/tables/embedded.csv",
    "results/tables/embedded.md",
    "results/figures/embedded_feature_norms.png",
    "results/figures/embedded_local_norms.png",
    "resources/data/embedded/train.npz",
    "results/embedded/seed0/models/ce.pt",
    "results/embedded/seed0/models/lff.pt",
    "results/embedded/seed0/models/ce_control.pt",
    "results/embedded/seed0/models/ssod.pt",
    "results/embedded/seed0/models/mode.pt",
    "results/embedded/seed0/models/logitnorm.pt",
    "results/embedded/seed0/scores/ssod/ssod.h5",
    "results/embedded/seed0/scores/mode/csd.h5",
    "results/figures/embedded_sensitivity.png",
    "results/figures/embedded_sensitivity.pdf",
    "results/tables/embedded_sensitivity.csv",
    "results/embedded/seed0/features/lff.h5",
    "results/embedded/seed0/scores/lff/react.h5",
    "results/embedded/seed0/scores/lff/odin.h5",
    "results/embedded/seed0/stats/lff/featurenorm.h5",
    "results/embedded/seed0/stats/lff/mahalanobis.h5",
    "results/tables/embedded_scorers.csv",
    "results/embedded/seed0/metrics/lff.csv",
    "results/embedded/seed0/models/ce_history.csv",
    "results/embedded/seed0/models/lff_history.csv",
    "results/embedded/metrics_all.csv",
]


def test_dry_run_every_documented_target(tmp_path):
    """One dry run with every documented target (each must be plannable with no data; one call
    keeps the suite fast: a failing target is named in Snakemake's error)."""
    proc = snakemake(tmp_path, "-n", "--cores", "2", *DOCUMENTED_TARGETS, config=REPO / "config.yaml")
    counts = job_counts(proc.stdout)
    assert counts.get("prepare_embedded") == 1 and counts.get("sensitivity") == 1, proc.stdout[-2000:]
    for target in DOCUMENTED_TARGETS[1:]:
        assert target in proc.stdout, target  # planned as some job's output


def test_all_graph_is_complete(tmp_path):
    counts = job_counts(snakemake(tmp_path, "-n", "--cores", "2", "all", config=REPO / "config.yaml").stdout)
    seeds, variants = 2, 6  # benchmarks.embedded.seeds; ce, ce_control, lff, ssod, mode, logitnorm
    models = seeds * variants
    assert counts["train"] == models
    assert counts["extract"] == models
    # cached-feature scorers: 9 on every model (msp, mahalanobis, energy, vim, dice, react, dice_react,
    # featurenorm, line) and SSOD's three on the SSOD models only; the two that search the ID bank (knn,
    # csd) in their own GPU jobs
    assert counts["score"] == models * 9 + seeds * 3
    assert counts["score_search"] == models * 2
    assert counts["score_network"] == models  # odin, the one scorer that runs the network
    assert counts["fit_stats"] == models * 7  # react, mahalanobis, vim, dice, dice_react, featurenorm, line
    assert counts["metrics"] == models
    assert counts["scorer_table"] == 1 and counts["table"] == 1 and counts["figures"] == 1
    assert counts["compare"] == 1  # every method against the CE control (results/tables/embedded_vs_control.*)
    assert "sensitivity" not in counts  # sweeps are not part of all


def test_baselines_switch_plans_the_training_baselines_only(tmp_path):
    """`snakemake all --config run=baselines` (README): the benchmark embedded_baselines (the embedded benchmark
    by a YAML merge key) with CE, the control, LFF and the five baselines (CSI in two stages); not `embedded`."""
    proc = snakemake(tmp_path, "-n", "--cores", "2", "all", "--config", "run=baselines", config=REPO / "config.yaml")
    counts = job_counts(proc.stdout)
    seeds, variants = 2, 9  # ce, ce_control, lff, vos, npos, cider, ssd_plus, csi_pre, csi
    models = seeds * variants
    assert counts["train"] == counts["extract"] == counts["metrics"] == models
    # as `all` above, plus each baseline's own score on its models only: ssd and csi from cached features
    # (ssd fitted), cider_knn and npos_knn searching the ID bank
    assert counts["score"] == models * 9 + seeds * 2 and counts["fit_stats"] == models * 7 + seeds
    assert counts["score_search"] == models * 2 + seeds * 2
    assert counts["prepare_embedded"] == 1 and "sensitivity" not in counts  # its own data; no sweeps
    assert "results/embedded_baselines/seed1/models/csi.pt" in proc.stdout and "results/embedded/" not in proc.stdout


def test_sensitivity_graph_trains_only_the_new_sweep_points(tmp_path):
    counts = job_counts(snakemake(tmp_path, "-n", "--cores", "2", "results/figures/embedded_sensitivity.png",
                                  config=REPO / "config.yaml").stdout)
    # 3 + 3 + 3 new LFF values and 2 new SSOD gammas (the base values are the variants themselves),
    # plus the variants they compare with (lff, ssod, ce_control) and their parent ce
    points = 11
    seeds = 2  # benchmarks.embedded.seeds
    assert counts["train"] == seeds * (points + 4)
    assert counts["sensitivity"] == 1
    assert counts["metrics"] == seeds * (points + 3)


def test_every_job_logs_under_its_rule(tmp_path):
    """Logs and benchmark files are logs/<rule>/<job>.log and benchmarks/<rule>/<job>.tsv, the job named
    as its artifact (workflow/rules/common.smk): every rule of the embedded and the paper benchmarks
    (`lffood benchmarks` reads the rule from the first folder)."""
    import re

    paper = REPO / "tests" / "configs" / "paper_dryrun.yaml"
    out = (snakemake(tmp_path / "e", "-n", "--cores", "2", "all", "results/figures/embedded_sensitivity.png",
                     config=REPO / "config.yaml").stdout
           + snakemake(tmp_path / "p", "-n", "--cores", "2", "all", config=paper).stdout)
    seen = {}
    for job in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", job)
        if m and m.group(1) != "all":
            for kind, top in (("log", "logs"), ("benchmark", "benchmarks")):
                path = re.search(rf"^\s+{kind}: (\S+)$", job, re.M).group(1)
                assert path.startswith(f"{top}/{m.group(1)}/"), (m.group(1), path)
                seen.setdefault((m.group(1), kind), path)
    assert re.fullmatch(r"logs/train/embedded/seed\d/\w+\.log", seen["train", "log"])  # the first run's
    assert re.fullmatch(r"benchmarks/score/embedded/seed\d/\w+/\w+\.tsv", seen["score", "benchmark"])
    assert re.fullmatch(r"logs/download/\w+\.log", seen["download", "log"])
    assert re.fullmatch(r"logs/figures/embedded\.log", seen["figures", "log"])  # figure and ext: the rule's own
    rules = set(re.findall(r"^rule (\w+):", "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk")),
                           re.M))
    assert {r for r, _ in seen} == rules - {"paper_table"}  # paper_table: tests/workflow/test_paper_targets.py


def test_bare_snakemake_builds_all(tmp_path):
    """The first rule of the root Snakefile is the default target: a bare run plans `all`."""
    counts = job_counts(snakemake(tmp_path, "-n", "--cores", "2", config=REPO / "config.yaml").stdout)
    assert counts.get("all") == 1 and counts.get("table") == 1


def test_invalid_config_fails_before_any_job(tmp_path):
    bad = (REPO / "config.yaml").read_text().replace("lff: {delta: 0.1", "lff: {delta: -0.5")
    (tmp_path / "bad.yaml").write_text(bad)
    proc = snakemake(tmp_path, "-n", "--cores", "2", config=tmp_path / "bad.yaml", check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "benchmarks.embedded.lff.delta" in err
    assert "config.yaml" in err


def test_lint_is_clean():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s", str(REPO / "Snakefile"), "-d", str(REPO)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("args", [["all", "--cores", "8", "--resources", "gpu=1"],
                                  ["--cores", "8", "--resources", "gpu=1", "--", "all"]])
def test_workstation_command_forms(tmp_path, args):
    """The documented workstation forms (targets before --resources, or after --) plan `all`."""
    counts = job_counts(snakemake(tmp_path, "-n", *args, config=REPO / "config.yaml").stdout)
    assert counts.get("all") == 1 and counts.get("train") == 12  # 2 seeds x 6 variants
