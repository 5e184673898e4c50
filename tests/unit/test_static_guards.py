"""Static guards over the code that runs in the workflow: what it loads and where its randomness
comes from, checked on the syntax tree of every Python file under ``src/`` and ``workflow/`` and of
the Snakefile and ``workflow/rules/*.smk`` (compiled to Python by Snakemake's own parser).

Why: a checkpoint or array file is data, and unpickling data runs code; a shuffle, crop or draw
from an unseeded or global generator makes a run unrepeatable without failing anything. Both are
one-word slips (a missing ``weights_only=True``, a ``generator=`` left out) that no behavioural
test notices, so they are caught here by rule, with the file and line of each violation:

* ``torch-load``: every ``torch.load`` passes ``weights_only=True`` literally;
* ``allow-pickle``: no ``allow_pickle`` other than a literal False (``np.load``, ``read_array``...);
* ``pickle``: no ``pickle``/``dill``/``joblib`` loads and no ``pandas.read_pickle``;
* ``torch-rng``: every torch draw (``torch.rand``, ``randn``, ``randint``, ``randperm``,
  ``multinomial``, ``normal``, ..., ``nn.init`` fills, in-place ``Tensor.uniform_``...) passes a
  ``generator=`` (not None);
* ``global-rng``: no legacy global-state ``np.random.<fn>``, no stdlib ``random.<fn>``, no
  re-seeding of torch's global generator;
* ``unseeded-rng``: every ``np.random.default_rng`` (and bit generator, ``random.Random``) gets a
  seed; every ``torch.Generator()`` is ``.manual_seed``-ed where it is made.

Exceptions are listed in ``ALLOWED`` with the reason, by file, enclosing function and call (not by
line, so they survive edits), and an entry that no longer matches anything fails. Each rule is shown
to fire on a planted defect and to stay quiet on the correct form. The file ends with a behavioural
test of the training collapse guard's last-epoch rule.
"""

from __future__ import annotations

import ast
import io
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import REPO  # noqa: E402
from lffood.data.arrays import Split
from lffood.data.loader import TensorImages
from lffood.errors import CollapseError
from lffood.models import build_model
from lffood.objectives import build_objective, register, unregister
from lffood.objectives.ce import CrossEntropy
from lffood.training import train

RULES = ("torch-load", "allow-pickle", "pickle", "torch-rng", "global-rng", "unseeded-rng")

# ----------------------------------------------------------------------------- what is forbidden
TORCH_LOADS = {"torch.load", "torch.serialization.load"}
PICKLE_LOADS = ({f"{m}.{f}" for m in ("pickle", "_pickle", "cPickle", "dill", "cloudpickle")
                 for f in ("load", "loads", "Unpickler")} | {"joblib.load", "pandas.read_pickle"})
# torch functions that draw from a generator and accept ``generator=``
TORCH_DRAWS = {f"torch.{f}" for f in ("rand", "randn", "randint", "randperm", "multinomial", "normal", "bernoulli",
                                       "poisson", "rand_like", "randn_like", "randint_like")}
INIT_DRAWS = {f"torch.nn.init.{f}" for f in ("uniform_", "normal_", "trunc_normal_", "xavier_uniform_",
                                              "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
                                              "orthogonal_", "sparse_")}
# in-place random fills, as methods of any tensor (names no NumPy or stdlib generator uses)
INPLACE_DRAWS = {"uniform_", "normal_", "bernoulli_", "random_", "exponential_", "geometric_", "cauchy_",
                 "log_normal_"}
TORCH_GLOBAL_SEEDING = {"torch.manual_seed", "torch.seed", "torch.set_rng_state", "torch.random.manual_seed",
                        "torch.random.seed", "torch.random.set_rng_state", "torch.cuda.manual_seed",
                        "torch.cuda.manual_seed_all", "torch.cuda.seed", "torch.cuda.seed_all",
                        "torch.cuda.set_rng_state", "torch.cuda.set_rng_state_all"}
# the explicit-generator API of numpy.random; every other numpy.random.<fn> uses the global state
NUMPY_SEEDED = {f"numpy.random.{f}" for f in ("default_rng", "SeedSequence", "PCG64", "PCG64DXSM", "Philox",
                                               "SFC64", "MT19937")}
NUMPY_MODERN = NUMPY_SEEDED | {"numpy.random.Generator", "numpy.random.BitGenerator"}
# names a module conventionally has when a file uses it without importing it (Snakemake files get
# the Snakefile's imports; ``lffood.lazy`` stands in for torch)
DEFAULT_ALIASES = {"np": "numpy", "numpy": "numpy", "torch": "torch"}
LAZY = {"torch": "torch", "F": "torch.nn.functional", "nn": "torch.nn"}


@dataclass(frozen=True)
class Allowed:
    path: str       # relative to the repository root
    function: str   # enclosing function, dotted through classes and nested functions
    call: str       # the call, fully qualified (imports resolved)
    reason: str


ALLOWED = (
    Allowed("src/lffood/runtime.py", "seed_everything", "random.seed",
            "seed_everything is the one place that seeds the global generators, with the run's seed, once per "
            "process before anything draws (pipeline.run_training, throughput)"),
    Allowed("src/lffood/runtime.py", "seed_everything", "numpy.random.seed",
            "as random.seed: the run's seed for any library code that falls back to NumPy's global state; "
            "lffood itself draws only from default_rng(seed) generators"),
    Allowed("src/lffood/runtime.py", "seed_everything", "torch.manual_seed",
            "seeds torch's global generator, which model initialisation draws from (nn.Linear/nn.Conv2d "
            "reset_parameters and init_weights); data order and augmentation use their own generators"),
    Allowed("src/lffood/models/base.py", "init_weights", "torch.nn.init.kaiming_normal_",
            "model initialisation: run_training calls seed_everything(seed) before build_model, so the draw is "
            "seeded by the run's seed; it shares torch's global generator with the layers' own default init "
            "(reset_parameters, which takes no generator), so a separate generator here would not make "
            "initialisation any more independent, and it would change every model's initial weights"),
    Allowed("src/lffood/checkpoint.py", "restore_rng", "torch.set_rng_state",
            "resuming a killed training job restores the global generator's saved state of its last finished "
            "epoch (not a new seed), so the resumed run draws exactly what the uninterrupted one would"),
    Allowed("src/lffood/checkpoint.py", "restore_rng", "torch.cuda.set_rng_state_all",
            "as torch.set_rng_state, for the CUDA generators of a resumed run"),
)


@dataclass(frozen=True)
class Violation:
    rule: str
    path: str
    line: int
    function: str
    call: str
    message: str

    def __str__(self) -> str:
        where = f" (in {self.function})" if self.function else ""
        return f"{self.path}:{self.line}{where}: [{self.rule}] {self.message}"


# ----------------------------------------------------------------------------- the checker
def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> fully qualified module or object, from every import in the file (module level or
    inside functions: they all bind the same names to the same things in practice)."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            for a in node.names:
                local = a.asname or a.name
                if module.split(".")[-1] == "lazy" and a.name in LAZY and (node.level or module == "lffood.lazy"):
                    out[local] = LAZY[a.name]
                elif node.level:
                    out[local] = "." * node.level + f"{module}.{a.name}"  # this package's own: never matches
                else:
                    out[local] = f"{module}.{a.name}"
    return out


def _qualified(func: ast.AST, aliases: dict[str, str]) -> str | None:
    """``np.random.shuffle`` -> ``numpy.random.shuffle``; None for calls on expressions (``f().g``)."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    head = aliases.get(func.id, DEFAULT_ALIASES.get(func.id, func.id))
    return ".".join([head, *reversed(parts)])


def _is_const(node: ast.AST | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _seed_given(call: ast.Call, *names: str) -> bool:
    """Whether the call passes a seed: a first positional argument or one of ``names``, not a literal None."""
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    seed = call.args[0] if call.args else next((kw[n] for n in names if n in kw), None)
    return seed is not None and not _is_const(seed, None)


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str, aliases: dict[str, str], linemap: dict[int, int] | None):
        self.path, self.aliases, self.linemap = path, aliases, linemap
        self.scope: list[str] = []
        self.found: list[Violation] = []
        # torch.Generator(...) calls seeded where they are made: the outer .manual_seed call is visited first
        self.seeded_generators: set[int] = set()

    def _flag(self, rule: str, node: ast.AST, call: str, message: str) -> None:
        line = self.linemap.get(node.lineno, node.lineno) if self.linemap else node.lineno
        self.found.append(Violation(rule, self.path, line, ".".join(self.scope), call, message))

    def _scoped(self, node) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr == "manual_seed" and isinstance(func.value, ast.Call)
                and _qualified(func.value.func, self.aliases) == "torch.Generator"):
            self.seeded_generators.add(id(func.value))
        name = _qualified(func, self.aliases)
        if name is not None:
            self._check(node, name)
        elif isinstance(func, ast.Attribute) and func.attr in INPLACE_DRAWS:  # torch.empty(3).uniform_(...)
            self._check_draw(node, ast.unparse(func))
        self.generic_visit(node)

    def _check(self, node: ast.Call, name: str) -> None:
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        star = any(k.arg is None for k in node.keywords)
        unchecked = " (a **mapping cannot be checked: pass it literally)" if star else ""
        last = name.rsplit(".", 1)[-1]

        if name in TORCH_LOADS and not _is_const(kw.get("weights_only"), True):
            self._flag("torch-load", node, name, f"{name}(...) without weights_only=True: loading a checkpoint "
                       f"would unpickle arbitrary objects{unchecked}")
        if "allow_pickle" in kw and not _is_const(kw["allow_pickle"], False):
            self._flag("allow-pickle", node, name, f"{name}(..., allow_pickle={ast.unparse(kw['allow_pickle'])}): "
                       "reading an array file must not unpickle objects; only a literal False is allowed")
        elif name == "numpy.load" and len(node.args) >= 3 and not _is_const(node.args[2], False):
            self._flag("allow-pickle", node, name, f"numpy.load with allow_pickle={ast.unparse(node.args[2])} "
                       "passed by position; only a literal False is allowed")
        elif name == "numpy.load" and star:
            self._flag("allow-pickle", node, name, f"numpy.load(..., **...): allow_pickle{unchecked}")
        if name in PICKLE_LOADS:
            self._flag("pickle", node, name, f"{name}(...) unpickles (runs code from the file); store arrays "
                       "in .npz/HDF5 and weights with torch.save/torch.load(weights_only=True)")

        if name in TORCH_DRAWS or name in INIT_DRAWS or (last in INPLACE_DRAWS and not name.startswith("numpy.")):
            self._check_draw(node, name)
        if name in TORCH_GLOBAL_SEEDING:
            self._flag("global-rng", node, name, f"{name}(...) re-seeds torch's global generator; only "
                       "lffood.runtime.seed_everything does that")
        if name.startswith("numpy.random.") and name not in NUMPY_MODERN:
            self._flag("global-rng", node, name, f"{name}(...) uses NumPy's legacy global state; draw from "
                       "np.random.default_rng(seed)")
        if name.startswith("random.") and name != "random.Random":
            self._flag("global-rng", node, name, f"{name}(...) uses the stdlib's global generator; draw from a "
                       "seeded generator (np.random.default_rng(seed), torch.Generator().manual_seed(seed))")
        if name in NUMPY_SEEDED and not _seed_given(node, "seed", "entropy"):
            self._flag("unseeded-rng", node, name, f"{name}() without a seed draws from OS entropy: pass the "
                       "run's seed")
        if name == "random.Random" and not _seed_given(node, "x"):
            self._flag("unseeded-rng", node, name, "random.Random() without a seed: pass the run's seed")
        if name == "torch.Generator" and id(node) not in self.seeded_generators:
            self._flag("unseeded-rng", node, name, "torch.Generator(...) not seeded where it is made: every run "
                       "would share its default seed; write torch.Generator(...).manual_seed(seed)")

    def _check_draw(self, node: ast.Call, name: str) -> None:
        generator = next((k.value for k in node.keywords if k.arg == "generator"), None)
        if generator is None or _is_const(generator, None):
            self._flag("torch-rng", node, name, f"{name}(...) without generator=: draws from torch's global "
                       "generator; pass the seeded torch.Generator of the data order/augmentation/sample")


def check_source(text: str, path: str, linemap: dict[int, int] | None = None) -> list[Violation]:
    """Every violation in ``text`` (Python source; ``path`` relative to the repository root), before the
    allow-list. ``linemap``: line in ``text`` -> line in the original file (Snakemake files)."""
    tree = ast.parse(text, filename=path)
    checker = _Checker(path, _aliases(tree), linemap)
    checker.visit(tree)
    return checker.found


def snakemake_to_python(text: str, path: str) -> tuple[str, dict[int, int]]:
    """A Snakefile or .smk file as the Python Snakemake runs, and its line map, by Snakemake's own parser."""
    from snakemake.parser import parse

    source = SimpleNamespace(get_path_or_uri=lambda secret_free=True: path)
    workflow = SimpleNamespace(sourcecache=SimpleNamespace(open=lambda _source: io.StringIO(text)))
    linemap: dict[int, int] = {}
    code, _ = parse(source, workflow, linemap)
    return code, linemap


def check_file(path: Path) -> list[Violation]:
    rel = path.relative_to(REPO).as_posix()
    text = path.read_text()
    if path.suffix == ".py":
        return check_source(text, rel)
    code, linemap = snakemake_to_python(text, rel)
    return check_source(code, rel, linemap)


def allowed(v: Violation) -> Allowed | None:
    return next((a for a in ALLOWED if (a.path, a.function, a.call) == (v.path, v.function, v.call)), None)


def scanned_files() -> list[Path]:
    files = sorted((REPO / "src").rglob("*.py")) + sorted((REPO / "workflow").rglob("*.py"))
    return files + [REPO / "Snakefile"] + sorted((REPO / "workflow").rglob("*.smk"))


@pytest.fixture(scope="module")
def repo_violations() -> list[Violation]:
    return [v for p in scanned_files() for v in check_file(p)]


# ----------------------------------------------------------------------------- the repository
def test_the_scan_covers_the_code_that_runs():
    """The guards are only as good as the file list: the library, the rule scripts and the Snakemake
    files are all in it, and the Snakemake files really are parsed (their rules become functions)."""
    rel = {p.relative_to(REPO).as_posix() for p in scanned_files()}
    for must in ("src/lffood/training.py", "src/lffood/data/loader.py", "src/lffood/runtime.py",
                 "workflow/scripts/train.py", "workflow/scripts/extract.py", "Snakefile", "workflow/rules/train.smk"):
        assert must in rel, must
    code, linemap = snakemake_to_python((REPO / "workflow/rules/train.smk").read_text(), "workflow/rules/train.smk")
    assert "def __rule_train" in code and linemap


def test_the_checker_sees_the_calls_it_guards():
    """A positive control on the real code: the checked torch.load calls and seeded draws are found
    (with their arguments), so an empty violation list means 'checked', not 'not seen'."""
    text = (REPO / "src/lffood/checkpoint.py").read_text()
    tree = ast.parse(text)
    aliases = _aliases(tree)
    names = [_qualified(n.func, aliases) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert names.count("torch.load") >= 2
    loader = ast.parse((REPO / "src/lffood/data/loader.py").read_text())
    aliases = _aliases(loader)
    assert "torch.randperm" in [_qualified(n.func, aliases) for n in ast.walk(loader) if isinstance(n, ast.Call)]


@pytest.mark.parametrize("rule", RULES)
def test_repository_has_no_violation(repo_violations, rule):
    bad = [v for v in repo_violations if v.rule == rule and allowed(v) is None]
    assert not bad, f"{len(bad)} violation(s) of '{rule}':\n" + "\n".join(map(str, bad))


def test_every_allowed_exception_is_still_needed(repo_violations):
    """An allow-list entry that matches nothing any more is removed, so the list stays the list of
    exceptions that exist (and a renamed function cannot silently carry one elsewhere)."""
    used = {allowed(v) for v in repo_violations} - {None}
    stale = [a for a in ALLOWED if a not in used]
    assert not stale, "allow-list entries that match no call:\n" + "\n".join(f"{a.path} {a.function} {a.call}"
                                                                              for a in stale)


# ----------------------------------------------------------------------------- planted defects
def rules_of(text: str, path: str = "src/lffood/example.py") -> list[str]:
    return [v.rule for v in check_source(text, path) if allowed(v) is None]


PLANTED = [
    # (rule, source with the defect, the same code written correctly)
    ("torch-load", "import torch\nm = torch.load(path, map_location='cpu')\n",
     "import torch\nm = torch.load(path, map_location='cpu', weights_only=True)\n"),
    ("torch-load", "import torch\nm = torch.load(path, weights_only=False)\n",
     "import torch\nm = torch.load(path, weights_only=True)\n"),
    ("torch-load", "import torch\nopts = {'weights_only': True}\nm = torch.load(path, **opts)\n",
     "import torch\nm = torch.load(path, weights_only=True)\n"),
    ("torch-load", "from torch import load as tload\nm = tload(path)\n",
     "from torch import load as tload\nm = tload(path, weights_only=True)\n"),
    ("allow-pickle", "import numpy as np\nz = np.load(path, allow_pickle=True)\n",
     "import numpy as np\nz = np.load(path, allow_pickle=False)\n"),
    ("allow-pickle", "import numpy\nz = numpy.load(path, allow_pickle=trusted)\n",
     "import numpy\nz = numpy.load(path)\n"),
    ("allow-pickle", "import numpy as np\nz = np.load(path, None, True)\n",
     "import numpy as np\nz = np.load(path, None, False)\n"),
    ("allow-pickle", "from numpy import load\nz = load(path, allow_pickle=True)\n",
     "from numpy import load\nz = load(path)\n"),
    ("pickle", "import pickle\nwith open(p, 'rb') as f:\n    obj = pickle.load(f)\n",
     "import json\nwith open(p) as f:\n    obj = json.load(f)\n"),
    ("pickle", "from pickle import loads\nobj = loads(blob)\n",
     "import json\nobj = json.loads(blob)\n"),
    ("pickle", "import pandas as pd\ndf = pd.read_pickle(p)\n",
     "import pandas as pd\ndf = pd.read_csv(p)\n"),
    # the unseeded shuffle: the data order from torch's global generator
    ("torch-rng", "import torch\ndef order(n, gen):\n    return torch.randperm(n)\n",
     "import torch\ndef order(n, gen):\n    return torch.randperm(n, generator=gen)\n"),
    ("torch-rng", "import torch\norder = torch.randperm(n, generator=None)\n",
     "import torch\norder = torch.randperm(n, generator=g)\n"),
    ("torch-rng", "from ..lazy import torch\nflip = torch.rand(b) < 0.5\n",
     "from ..lazy import torch\nflip = torch.rand(b, generator=g) < 0.5\n"),
    ("torch-rng", "import torch\ni = torch.randint(0, 10, (4,))\n",
     "import torch\ni = torch.randint(0, 10, (4,), generator=g)\n"),
    ("torch-rng", "import torch\nx = torch.randn(4, 3)\n",
     "import torch\nx = torch.randn(4, 3, generator=g)\n"),
    ("torch-rng", "import torch\nk = torch.multinomial(p, 2)\n",
     "import torch\nk = torch.multinomial(p, 2, generator=g)\n"),
    ("torch-rng", "import torch\nx = torch.normal(0.0, 1.0, (3,))\n",
     "import torch\nx = torch.normal(0.0, 1.0, (3,), generator=g)\n"),
    ("torch-rng", "import torch\nx = torch.empty(3).uniform_(-1, 1)\n",
     "import torch\nx = torch.empty(3).uniform_(-1, 1, generator=g)\n"),
    ("torch-rng", "from torch import nn\nnn.init.normal_(w)\n",
     "from torch import nn\nnn.init.normal_(w, generator=g)\n"),
    ("global-rng", "import numpy as np\nnp.random.shuffle(idx)\n",
     "import numpy as np\nnp.random.default_rng(seed).shuffle(idx)\n"),
    ("global-rng", "import numpy as np\nperm = np.random.permutation(n)\n",
     "import numpy as np\nrng = np.random.default_rng(seed)\nperm = rng.permutation(n)\n"),
    ("global-rng", "from numpy.random import rand\nx = rand(3)\n",
     "from numpy.random import default_rng\nx = default_rng(0).random(3)\n"),
    ("global-rng", "import random\nrandom.shuffle(items)\n",
     "import random\nrandom.Random(seed).shuffle(items)\n"),
    ("global-rng", "from random import choice\nc = choice(items)\n",
     "import random\nc = random.Random(seed).choice(items)\n"),
    ("global-rng", "import torch\ntorch.manual_seed(0)\n",
     "import torch\ng = torch.Generator().manual_seed(0)\n"),
    ("unseeded-rng", "import numpy as np\nrng = np.random.default_rng()\n",
     "import numpy as np\nrng = np.random.default_rng(seed)\n"),
    ("unseeded-rng", "import numpy as np\nrng = np.random.default_rng(seed=None)\n",
     "import numpy as np\nrng = np.random.default_rng(seed=seed)\n"),
    ("unseeded-rng", "import random\nr = random.Random()\n",
     "import random\nr = random.Random(seed)\n"),
    ("unseeded-rng", "import torch\ng = torch.Generator()\n",
     "import torch\ng = torch.Generator().manual_seed(seed)\n"),
]


@pytest.mark.parametrize("rule,defect,fixed", PLANTED, ids=[f"{r}-{i}" for i, (r, *_) in enumerate(PLANTED)])
def test_planted_defect_is_flagged_and_the_fix_is_not(rule, defect, fixed):
    assert rules_of(defect) == [rule], check_source(defect, "src/lffood/example.py")
    assert rules_of(fixed) == [], check_source(fixed, "src/lffood/example.py")


def test_a_violation_names_file_line_and_function():
    text = "import torch\n\n\nclass Store:\n    def read(self, p):\n        x = 1\n        return torch.load(p)\n"
    (v,) = check_source(text, "src/lffood/store.py")
    assert (v.path, v.line, v.function, v.call) == ("src/lffood/store.py", 7, "Store.read", "torch.load")
    assert str(v).startswith("src/lffood/store.py:7 (in Store.read): [torch-load]")


def test_snakemake_files_are_checked_at_their_own_line_numbers():
    """Python in a Snakefile (a run: block, an input function) is checked like any module, and the
    violation points at the line of the .smk file, not of the compiled code."""
    smk = ('import pickle\n\n\nrule summary:\n    input: "a.pkl"\n    output: "b.txt"\n    run:\n'
           '        with open(input[0], "rb") as f:\n            obj = pickle.load(f)\n'
           '        open(output[0], "w").write(str(obj))\n')
    code, linemap = snakemake_to_python(smk, "workflow/rules/x.smk")
    (v,) = check_source(code, "workflow/rules/x.smk", linemap)
    assert (v.rule, v.line) == ("pickle", 9)


def test_the_allow_list_is_by_place_not_by_call():
    """``np.random.seed`` is allowed in seed_everything and nowhere else, even in the same file."""
    seeding = "import numpy as np\n\n\ndef seed_everything(seed):\n    np.random.seed(seed)\n"
    elsewhere = "import numpy as np\n\n\ndef shuffle_rows(seed):\n    np.random.seed(seed)\n"
    assert rules_of(seeding, "src/lffood/runtime.py") == []
    assert rules_of(elsewhere, "src/lffood/runtime.py") == ["global-rng"]
    assert rules_of(seeding, "src/lffood/training.py") == ["global-rng"]


def test_every_allowed_exception_has_a_reason():
    for a in ALLOWED:
        assert len(a.reason) > 40 and a.path.endswith(".py") and a.function, a
        assert (REPO / a.path).is_file(), a.path


# ----------------------------------------------------------------------------- collapse guard, last epoch
# test_models_training.py::test_collapse_guard_at_last_epoch_with_patience_left covers a run that is
# collapsed from its first epoch to its last with patience left. These pin the rest of the rule:
# what counts is the last epoch itself (collapsed or not), not the run's earlier epochs.
GUARD = {"enabled": True, "chance_factor": -1.0, "min_feature_norm": 0.0, "patience": 3}
STAGE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False, "epochs": 3,
         "batch_size": 16, "schedule": {"type": "constant"}, "augment": {"crop_padding": 0, "hflip": False,
                                                                           "color_jitter": 0.0}}


@pytest.mark.parametrize("collapsed,stops_at", [
    ({3}, 3),         # only the last epoch: 1 collapsed epoch < patience 3, still stops
    ({2, 3}, 3),      # 2 < patience 3 collapsed epochs ending at the last
    ({2}, None),      # collapsed once, then recovered: the count resets, the last epoch is fine
    (set(), None),    # never collapsed, guard on: no false alarm at the last epoch
])
def test_collapse_guard_judges_the_last_epoch(collapsed, stops_at):
    """A run whose last epoch is collapsed is stopped (no checkpoint) even with fewer than
    ``guard.patience`` collapsed epochs; a healthy last epoch is not."""

    @register("toy_collapse")
    class ToyCollapse(CrossEntropy):
        """Cross-entropy whose own collapse check fires in the epochs listed in ``collapsed``."""

        def collapse(self, row):
            return f"toy collapse in epoch {int(row['epoch'])}" if int(row["epoch"]) in collapsed else None

    rng = np.random.default_rng(0)
    data = TensorImages(Split(rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8), np.arange(16) % 4),
                        [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    torch.manual_seed(0)
    model = build_model({"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]}, 4)
    try:
        objective = build_objective("toy_collapse", None, feature_dim=8, num_classes=4)
        if stops_at is None:
            hist = train(model, data, STAGE, objective=objective, seed=0, device=torch.device("cpu"), guard=GUARD)
            assert [r["epoch"] for r in hist] == [1, 2, 3]
        else:
            msg = f"collapsed at epoch {stops_at}: toy collapse in epoch {stops_at}"
            with pytest.raises(CollapseError, match=msg):
                train(model, data, STAGE, objective=objective, seed=0, device=torch.device("cpu"), guard=GUARD)
    finally:
        unregister("toy_collapse")
