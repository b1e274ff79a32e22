"""ablate uses its libraries' public APIs only: no private module or name imported, no private method overridden; and
the sweeper built on Hydra's public plugin API launches the jobs Hydra's basic sweeper would."""
import ast
import importlib
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hydra_plugins.ablate_sweeper import AblateSweeper

ROOT = Path(__file__).resolve().parents[1]
OURS = ("ablate", "hydra_plugins.ablate_sweeper")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(path: Path) -> list[str]:
    """``path``'s imports of another package's private modules or names, and its classes' overrides of private
    methods of another package's classes."""
    tree = ast.parse(path.read_text())
    found, imported = [], {}  # imported: a name bound by an import from another package → its full dotted name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in (a for a in node.names if not a.name.startswith(OURS)):
                if any(map(_private, alias.name.split("."))):
                    found.append(f"import {alias.name}")
                # import a.b binds a; import a.b as c binds c to a.b
                top = alias.name.split(".")[0]
                imported[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and not node.module.startswith(OURS):
            for alias in node.names:
                if any(map(_private, [*node.module.split("."), alias.name])):
                    found.append(f"from {node.module} import {alias.name}")
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for base in cls.bases:
            dotted = ast.unparse(base)
            head, _, rest = dotted.partition(".")
            if head not in imported:
                continue
            module, _, name = f"{imported[head]}.{rest}".rstrip(".").rpartition(".")
            base_class = getattr(importlib.import_module(module), name)
            found += [f"{cls.name}.{f.name} overrides {dotted}'s private {f.name}" for f in cls.body
                      if isinstance(f, ast.FunctionDef) and _private(f.name) and hasattr(base_class, f.name)]
    return found


def test_the_package_and_its_hydra_plugin_use_public_apis_only():
    files = [*(ROOT / "ablate").rglob("*.py"), *(ROOT / "hydra_plugins" / "ablate_sweeper").rglob("*.py")]
    assert len(files) > 40
    found = {str(p.relative_to(ROOT)): uses for p in files if (uses := private_uses(p))}
    assert found == {}


def test_the_check_finds_a_private_import_and_a_private_override(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from hydra._internal.core_plugins.basic_sweeper import BasicSweeper\n"
                      "import filelock\n"
                      "class Lease(filelock.SoftFileLease):\n"
                      "    def _acquire(self): ...\n"
                      "    def _ours(self): ...\n")
    assert private_uses(module) == ["from hydra._internal.core_plugins.basic_sweeper import BasicSweeper",
                                    "Lease._acquire overrides filelock.SoftFileLease's private _acquire"]


class RecordingLauncher:
    """A launcher that runs nothing: it keeps the batches it was given, and each job fails or returns its index."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.batches: list[tuple[int, list[list[str]]]] = []
        self.fail_at = fail_at

    def launch(self, job_overrides, initial_job_idx):
        self.batches.append((initial_job_idx, [list(job) for job in job_overrides]))
        results = []
        for i, _ in enumerate(job_overrides, start=initial_job_idx):
            result = JobReturn(status=JobStatus.COMPLETED, _return_value=i)
            if i == self.fail_at:
                result = JobReturn(status=JobStatus.FAILED, _return_value=ValueError(f"job {i} failed"))
            results.append(result)
        return results


def sweeper_of(tmp_path: Path, launcher: RecordingLauncher, monkeypatch, **kwargs) -> AblateSweeper:
    sweeper = AblateSweeper(**kwargs)
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    sweeper.launcher = launcher
    monkeypatch.setattr(sweeper, "validate_batch_is_legal", lambda batch: None)  # no Hydra context here
    return sweeper


def test_the_sweeper_launches_the_cartesian_product_in_order_and_in_batches(tmp_path, monkeypatch):
    launcher = RecordingLauncher()
    # As Hydra's basic sweeper documents it: a=1,2 b=10,20 runs (1,10) (1,20) (2,10) (2,20); the sweep file's params
    # come first, and the command line replaces a param of the same key.
    sweeper = sweeper_of(tmp_path, launcher, monkeypatch, max_batch_size=3, params={"a": "0", "b": "10,20"})
    returns = sweeper.sweep(["a=1,2", "c=x"])
    assert launcher.batches == [
        (0, [["a=1", "b=10", "c=x"], ["a=1", "b=20", "c=x"], ["a=2", "b=10", "c=x"]]),
        (3, [["a=2", "b=20", "c=x"]]),
    ]
    assert [[r.return_value for r in batch] for batch in returns] == [[0, 1, 2], [3]]
    assert OmegaConf.load(tmp_path / "sweep" / "multirun.yaml").hydra.sweep.dir == str(tmp_path / "sweep")


def test_the_sweeper_launches_one_batch_by_default_and_raises_a_failed_jobs_error(tmp_path, monkeypatch):
    launcher = RecordingLauncher(fail_at=1)
    sweeper = sweeper_of(tmp_path, launcher, monkeypatch)
    with pytest.raises(ValueError, match="job 1 failed"):
        sweeper.sweep(["seed=0,1,2"])
    assert launcher.batches == [(0, [["seed=0"], ["seed=1"], ["seed=2"]])]
