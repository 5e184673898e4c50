"""Environments: conda env files pin the same versions as requirements.txt, every rule names one,
and the pinned torchvision imports and runs its compiled ops on a CPU-only machine."""

import re

import yaml

from conftest import REPO  # noqa: E402


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def env_pins(path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    assert env["channels"] and env["name"].startswith("lffood-"), path
    pins = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            m = re.match(r"^([A-Za-z0-9_.\-]+)\s*={1,2}\s*([^\s=]+)$", item)
            assert m, f"{path.name}: '{item}' is not pinned"
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_env_pins_equal_requirements():
    req = requirement_pins()
    aliases = {"pytorch": "torch"}
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert {p.stem for p in envs} == {"data", "train", "evaluate", "report"}
    for path in envs:
        for name, version in env_pins(path).items():
            name = aliases.get(name, name)
            if name in ("python", "pip"):
                continue
            assert name in req, f"{path.name}: {name} is not in requirements.txt"
            assert req[name] == version, f"{path.name}: {name}=={version} but requirements.txt pins {req[name]}"


def test_every_rule_names_an_existing_env():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        n_rules = len(re.findall(r"^rule \w+:", text, re.M))
        envs = re.findall(r'conda:\s*\n\s*"([^"]+)"', text)
        assert len(envs) == n_rules, f"{smk.name}: {n_rules} rules, {len(envs)} conda: directives"
        for env in envs:
            assert (smk.parent / env).resolve().exists(), f"{smk.name}: {env} missing"


def test_torchvision_compiled_ops_on_cpu():
    import torch
    import torchvision
    from torchvision.ops import nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]
    assert torchvision.__version__.split("+")[0] == requirement_pins()["torchvision"]


# ---- static validation (conda channels are not reachable here, so envs cannot be created in CI)

ENVS = REPO / "envs"
# rule file -> env it must use: one env per rule group
RULE_GROUPS = {"data.smk": "data", "train.smk": "train", "extract.smk": "train", "evaluate.smk": "evaluate",
               "report.smk": "report", "report_page.smk": "report"}
# distribution name -> top-level import name
IMPORT_NAMES = {"scikit-learn": "sklearn", "pyyaml": "yaml", "pillow": "PIL", "pytorch": "torch"}
THIRD_PARTY = {"torch", "torchvision", "numpy", "pandas", "h5py", "yaml", "jsonschema", "sklearn", "matplotlib",
               "PIL", "scipy"}
# what those packages bring with them (their own dependencies on conda-forge and PyPI)
TRANSITIVE = {"matplotlib": {"PIL", "numpy"}, "sklearn": {"scipy", "numpy"}, "torchvision": {"PIL", "torch"},
              "pandas": {"numpy"}}
# modules the rule scripts of each group import at start-up
GROUP_IMPORTS = {
    "data": ["lffood.pipeline", "lffood.data.embedded"],
    "train": ["lffood.pipeline", "lffood.ddp", "lffood.training", "lffood.extraction", "lffood.models"],
    "evaluate": ["lffood.pipeline", "lffood.scorers", "lffood.metrics", "lffood.h5schema"],
    "report": ["lffood.report.tables", "lffood.report.figures", "lffood.report.page"],
}


def load_env(name):
    return yaml.safe_load((ENVS / f"{name}.yaml").read_text())


def test_envs_parse_with_pinned_python_and_conda_forge_only():
    for path in sorted(ENVS.glob("*.yaml")):
        env = yaml.safe_load(path.read_text())
        assert set(env) == {"name", "channels", "dependencies"}, path.name
        assert env["name"] == f"lffood-{path.stem}", f"{path.name}: name {env['name']!r}"
        assert env["channels"] == ["conda-forge", "nodefaults"], f"{path.name}: channels {env['channels']}"
        pins = env_pins(path)
        assert re.fullmatch(r"3\.\d+", pins.get("python", "")), f"{path.name}: python not pinned"
        assert tuple(map(int, pins["python"].split("."))) >= (3, 11), "pyproject requires Python >= 3.11"
        has_pip = any(isinstance(d, dict) for d in env["dependencies"])
        assert has_pip == ("pip" in pins), f"{path.name}: a pip: section needs a pinned pip"


def test_rules_use_their_groups_env():
    """One env per rule group (the rule file), except that rules running the network (GPU rules:
    the network scorers in evaluate.smk) use the training env, which has torch."""
    from conftest import gpu_rules, workflow_rules

    gpu = gpu_rules()
    rules = workflow_rules()
    for smk, group in RULE_GROUPS.items():
        names = re.findall(r"^rule (\w+):", (REPO / "workflow" / "rules" / smk).read_text(), re.M)
        assert names, smk
        for name in names:
            envs = re.findall(r'conda:\s*\n\s*"([^"]+)"', rules[name])
            want = "train" if name in gpu else group
            assert envs == [f"../../envs/{want}.yaml"], f"{smk}, rule {name}: {envs}"
    assert set(RULE_GROUPS.values()) == {p.stem for p in ENVS.glob("*.yaml")}


def test_training_env_pins_the_cuda_torch_build():
    """torch/torchvision come from PyPI inside the env: the Linux x86_64 wheels of these pins are CUDA
    builds, whatever the host that creates the env has (no __cuda virtual package needed), so an env
    made on a GPU-less submit node uses the GPU of the node the job runs on. The pinned torch of this
    environment is the same wheel: check it is a CUDA build."""
    import torch

    pip = next(d["pip"] for d in load_env("train")["dependencies"] if isinstance(d, dict))
    assert f"torch=={requirement_pins()['torch']}" in pip and f"torchvision=={requirement_pins()['torchvision']}" in pip
    assert torch.__version__.split("+")[0] == requirement_pins()["torch"]
    assert torch.version.cuda is not None, f"the pinned torch {torch.__version__} is a CPU-only build"


def test_each_groups_modules_import_with_only_its_env(tmp_path):
    """A rule group's scripts import nothing its env lacks (e.g. no torch in the evaluate env)."""
    import subprocess
    import sys

    for group, modules in GROUP_IMPORTS.items():
        allowed = {IMPORT_NAMES.get(n, n) for n in env_pins(ENVS / f"{group}.yaml")} & THIRD_PARTY
        allowed |= set().union(*(TRANSITIVE.get(m, set()) for m in allowed))
        blocked = sorted(THIRD_PARTY - allowed)
        code = (
            "import sys, importlib.abc\n"
            f"BLOCKED = {blocked!r}\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in BLOCKED:\n"
            "            raise ImportError(f'{name} is not in the env')\n"
            "sys.meta_path.insert(0, Block())\n"
            + "".join(f"import {m}\n" for m in modules)
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"envs/{group}.yaml lacks a module its rules import:\n{proc.stderr[-1500:]}"
