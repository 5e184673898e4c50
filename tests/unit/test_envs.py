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
