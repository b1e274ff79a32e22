"""The codebase's shape: dependencies one way, entry points that start fast, and facts kept in one place."""
import ast
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ablate.config import CONF_DIR, group_options
from ablate.record import RunRecord, write_record
from ablate.reference import table5
from ablate.report.build import load_runs
from ablate.sweep.jobs import job_overrides

HEAVY = ("torch", "timm")


def imported_after(code: str, cwd: Path | None = None) -> tuple[set[str], subprocess.CompletedProcess]:
    """The top-level modules a fresh interpreter has imported after running ``code``, and the interpreter's exit
    status and output (the code's own: its exit status, and its output less the modules' line)."""
    probe = f"import sys\ntry:\n{''.join('    ' + line + chr(10) for line in code.splitlines())}" \
            "finally:\n    print('MODULES', *sorted({m.split('.')[0] for m in sys.modules}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, timeout=120)
    out.stdout, printed, modules = out.stdout.rpartition("MODULES ")
    assert printed, out.stderr[-2000:]
    return set(modules.split()), out


def test_help_imports_neither_torch_nor_timm(tmp_path):
    modules, out = imported_after("import runpy\nsys.argv = ['ablate', '--help']\nrunpy.run_module('ablate', "
                                  "run_name='__main__')", cwd=tmp_path)
    assert not modules & set(HEAVY) and "hydra" in modules
    assert out.returncode == 0 and "python -m ablate -m +sweep=table5" in out.stdout


@pytest.mark.parametrize("args", [["pool_size=4"], ["train.epochs=0"], ["data=folder"], ["-m", "pool_size=3,4"]])
def test_a_wrong_value_is_refused_before_torch_and_timm_load(tmp_path, args):
    modules, out = imported_after(f"import runpy\nsys.argv = ['ablate', *{args!r}, 'hydra.run.dir=run', "
                                  "'hydra.sweep.dir=sweep']\nrunpy.run_module('ablate', run_name='__main__')",
                                  cwd=tmp_path)
    assert not modules & set(HEAVY) and "hydra" in modules
    assert out.returncode == 1 and "error: " in out.stderr and not list(tmp_path.rglob("results.json"))


def test_report_imports_neither_torch_nor_timm(tmp_path):
    write_record(tmp_path / "run", RunRecord("Baseline", "PoolFormer-S12", "baseline"))
    modules, out = imported_after(f"import runpy\nsys.argv = ['ablate.report', {str(tmp_path)!r}, '--out', "
                                  f"{str(tmp_path / 'out')!r}]\nrunpy.run_module('ablate.report', run_name='__main__')")
    assert not modules & set(HEAVY) and "pandas" in modules
    assert out.returncode == 0 and (tmp_path / "out" / "table.md").is_file()


def test_report_columns_are_the_records_fields_with_their_types(tmp_path):
    record = RunRecord("Token mixers", "Pooling → Identity mapping", "identity", seed=3, top1=71.5, best_epoch=2)
    write_record(tmp_path / "run", record)
    runs = load_runs([tmp_path])
    assert {f.name for f in fields(RunRecord)} <= set(runs.columns)
    assert runs.best_epoch.dtype == "Int64" and runs.top5.dtype == float and runs.seed[0] == 3


def test_a_record_round_trips_and_tolerates_other_versions(tmp_path):
    record = RunRecord("Token mixers", "Pooling → Identity mapping", "identity", seed=3, top1=71.5)
    data = {**json.loads(json.dumps(record.__dict__)), "field_of_a_later_version": 1}
    data.pop("peak_mem_mb")
    assert RunRecord.from_dict(data) == record


def test_each_table5_row_is_one_file_named_by_its_id():
    assert group_options("sweep/table5") == sorted(table5.rows())
    assert list(table5.rows())[0] == table5.BASELINE


def test_named_sweeps_list_row_ids_only_and_table5_runs_every_row_file():
    for sweep in group_options("sweep"):
        params = OmegaConf.load(CONF_DIR / "sweep" / f"{sweep}.yaml").hydra.sweeper.params
        assert list(params) == ["+sweep/table5"]
        if sweep != "table5":
            assert set(str(params["+sweep/table5"]).split(",")) <= set(table5.rows())
    # table5 lists no ids of its own: a new row file joins +sweep=table5 by existing.
    table5_params = OmegaConf.load(CONF_DIR / "sweep" / "table5.yaml").hydra.sweeper.params
    jobs = job_overrides(_sweep(dict(table5_params), []))
    assert sorted(job[0].partition("=")[2] for job in jobs) == sorted(table5.rows())


def _sweep(params: dict, task: list[str]) -> OmegaConf:
    return OmegaConf.create({"hydra": {"sweeper": {"params": params}, "overrides": {"task": task}}})


def test_job_overrides_expand_as_hydras_basic_sweeper():
    jobs = job_overrides(_sweep({"+sweep/table5": "baseline,identity"}, ["seed=0,1", "model=xs"]))
    assert jobs == [["+sweep/table5=baseline", "seed=0", "model=xs"], ["+sweep/table5=baseline", "seed=1", "model=xs"],
                    ["+sweep/table5=identity", "seed=0", "model=xs"], ["+sweep/table5=identity", "seed=1", "model=xs"]]
    # The command line replaces the sweep file's value of the same key.
    assert job_overrides(_sweep({"+sweep/table5": "baseline,identity"}, ["+sweep/table5=ln"])) == \
        [["+sweep/table5=ln"]]
    assert len(job_overrides(_sweep({}, ["+sweep/table5=glob(pool*)"]))) == 3


PACKAGE = Path(__file__).resolve().parents[1] / "ablate"


def ablate_imports() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Each module of the package → the ablate modules, and the other top-level packages, it imports anywhere
    (lazily inside a function too), read from the source: stricter than watching one run's sys.modules."""
    def name(path: Path) -> str:
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    modules = {name(p): p for p in PACKAGE.rglob("*.py") if "conf" not in p.relative_to(PACKAGE).parts[:1]}
    graph, external = {}, {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # `from ablate.x import y` imports ablate.x.y when y is a module, else ablate.x
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                            for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[module] = {t for t in targets if t in modules and t != module}
        external[module] = {t.split(".")[0] for t in targets if t.split(".")[0] != "ablate"}
    return graph, external


def imported_with(package: str) -> tuple[set[str], set[str]]:
    """The ablate modules, and the other top-level packages, that importing any module of ``package`` can load:
    its imports, theirs, and the packages each module's import runs first (its parents' __init__)."""
    graph, external = ablate_imports()
    seen, todo = set(), [m for m in graph if m == package or m.startswith(package + ".")]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += [*graph[module], *([module.rpartition(".")[0]] if "." in module else [])]
    return seen, set().union(*(external[m] for m in seen))


def test_the_model_needs_neither_hydra_nor_omegaconf_and_data_knows_nothing_of_the_model():
    modules, packages = imported_with("ablate.model")
    assert "torch" in packages and "timm" in packages and not packages & {"hydra", "omegaconf"}, packages
    assert not any(m.startswith(("ablate.config", "ablate.run", "ablate.sweep", "ablate.report")) for m in modules)
    modules, _ = imported_with("ablate.data")
    assert "ablate.data.store" in modules and not any(m.startswith("ablate.model") for m in modules)


@pytest.mark.parametrize("package", ["ablate.run", "ablate.data", "ablate.report", "ablate.model", "ablate.record"])
def test_past_the_config_edge_nothing_imports_hydra_or_omegaconf(package):
    """The config stops at config/: what runs, loads data, builds models or reads records takes typed specs."""
    modules, packages = imported_with(package)
    assert not packages & {"hydra", "omegaconf"}, packages
    assert not any(m.startswith(("ablate.config", "ablate.sweep")) for m in modules), sorted(modules)


# Which top-level unit of ablate (a subpackage, or a module beside them) may import which: sweep uses config and run;
# run uses data, model and the record; data and model use neither run nor config; report reads records only. The
# shared modules (errors, registry, specs, files, record, reference) use none of the layers.
SHARED = {"errors", "registry", "specs", "files", "record", "reference"}
MAY_IMPORT = {
    "__main__": {"cli"},
    "cli": {"config", "run", "sweep"} | SHARED,
    "status": {"sweep"} | SHARED,
    "plan": {"config", "data", "model", "run", "sweep"} | SHARED,  # Hydra finds its callback by name, in conf/
    "sweep": {"config", "run", "report"} | SHARED,
    "config": {"data", "model"} | SHARED,
    "run": {"data", "model"} | SHARED,
    "data": SHARED,
    "model": SHARED,
    "report": SHARED,
    **{name: SHARED for name in SHARED},
}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ablate"


def test_imports_between_packages_run_one_way_and_form_no_cycle():
    graph, _ = ablate_imports()
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges.setdefault(_unit(module), set()).update(_unit(t) for t in targets if _unit(t) != _unit(module))
    edges.pop("ablate")  # the package's lazy public API, which names a module of each layer
    assert set(edges) <= set(MAY_IMPORT), sorted(set(edges) - set(MAY_IMPORT))
    for unit, targets in edges.items():
        assert targets <= MAY_IMPORT[unit], f"{unit} imports {sorted(targets - MAY_IMPORT[unit])}"
    assert_acyclic(edges, "package cycle")


def test_no_import_cycles_lazy_imports_included():
    graph, _ = ablate_imports()
    assert len(graph) > 40 and "ablate.run.train" in graph["ablate.cli"]  # lazy imports are seen
    # A package's __init__ importing its own submodules is how packages re-export; not a cycle.
    assert_acyclic(graph, "import cycle", allowed=lambda module, target: module.startswith(target + "."))


def assert_acyclic(graph: dict[str, set[str]], what: str,
                   allowed: Callable[[str, str], bool] = lambda module, target: False) -> None:
    """AssertionError naming the first cycle of ``graph`` (an edge ``allowed`` may close one)."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open" and not allowed(node, target):
                raise AssertionError(f"{what}: " + " → ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_package_top_level_stays_small():
    code = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    # The subpackages, the commands (cli, status, plan), and the modules every layer shares (errors, registry, specs,
    # record, files).
    assert len(code - {"__init__.py", "__main__.py"}) <= 15, sorted(code)
    for sub in (p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        assert ast.get_docstring(ast.parse((sub / "__init__.py").read_text())), f"{sub.name}/__init__.py says its job"


def test_the_readme_python_example_runs():
    readme = (PACKAGE.parent / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
