"""dvc.yaml as its users meet it, with the real DVC: stage deps are the modules each stage imports, training
waits for the validation, headline metrics are small files committed to git, ROC curves have one colour each."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
DVC = [sys.executable, "-m", "dvc"]
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(SRC)}

#: the module whose function each stage's verb calls (a new stage adds a line here)
VERB_MODULES = {
    "field": ["lenssearch.fields.lenstool", "lenssearch.fields.painted", "lenssearch.fields.synthetic",
              "lenssearch.fields.user"],
    "simulate": ["lenssearch.simulate.inject"],
    "negatives": ["lenssearch.simulate.negatives"],
    "kb": ["lenssearch.kb.build", "lenssearch.kb.report"],
    "validate": ["lenssearch.kb.validation"],
    "train": ["lenssearch.train.kfold"],
    "evaluate": ["lenssearch.evaluate.stages"],
    "committee": ["lenssearch.evaluate.committee_stage"],
    "tune": ["lenssearch.evaluate.tune"],
    "promote": ["lenssearch.evaluate.promote"],
    "search-field": ["lenssearch.search.demo"],
    "search": ["lenssearch.search.pipeline"],
    "known-lenses": ["lenssearch.search.known"],
    "modeling": ["lenssearch.modeling.stage"],
    "model-candidates": ["lenssearch.modeling.candidates"],
    "independent simulate": ["lenssearch.independent.simulate"],
    "independent score": ["lenssearch.independent.score"],
}
#: the command-line layer and shared utilities: like cli.py itself, not stage deps (an edit re-runs nothing)
INFRASTRUCTURE = {"lenssearch", "lenssearch._runtime", "lenssearch.errors", "lenssearch.io", "lenssearch.config",
                  "lenssearch.config_ranges", "lenssearch.cli", "lenssearch.headline"}
#: data files that a module reads (itself, or through the loader it calls: evaluate/stages.py calls
#: data.load_published): a stage importing the module depends on them too
DATA = {"src/lenssearch/fields/psf.py": "src/lenssearch/data/psf",
        "src/lenssearch/evaluate/stages.py": "src/lenssearch/evaluate/angora2023_tables.yaml"}


def _module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):  # module level and inside functions: what can run
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lenssearch")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lenssearch"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}")}
    return found


def imported_files(entries) -> set[str]:
    """The files (relative to the repository) of every lenssearch module that ``entries`` import, transitively."""
    seen, todo = set(), list(entries)
    while todo:
        name = todo.pop()
        if name in seen or _module_file(name) is None:
            continue
        seen.add(name)
        todo.extend(_imports(_module_file(name)))
    return {_module_file(m).relative_to(REPO).as_posix() for m in seen - INFRASTRUCTURE}


def _stages():
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, stage in doc["stages"].items():
        body = stage.get("do", stage)
        words = body["cmd"].split()
        verb = " ".join(words[1:3]) if words[1] == "independent" else words[1]
        yield name, verb, [str(d) for d in body.get("deps", [])]


@pytest.mark.parametrize("name,verb,deps", list(_stages()), ids=[s[0] for s in _stages()])
def test_stage_deps_are_the_modules_the_stage_imports(name, verb, deps):
    assert verb in VERB_MODULES, f"stage {name}: verb '{verb}' has no entry in VERB_MODULES"
    code = imported_files(VERB_MODULES[verb])
    src_deps = [d for d in deps if d.startswith("src/")]

    def covered(path):
        return any(path == d or path.startswith(d.rstrip("/") + "/") for d in src_deps)

    missing = sorted(f for f in code if not covered(f))
    assert not missing, f"stage {name} imports {missing} but does not depend on them"
    for dep in src_deps:
        path = REPO / dep
        assert path.exists(), f"stage {name}: dep {dep} does not exist"
        python = [p.relative_to(REPO).as_posix() for p in ([path] if path.is_file() else path.rglob("*.py"))
                  if p.suffix == ".py"]
        if python:  # a code dep: every module under it is imported (editing another one re-runs nothing)
            unused = sorted(set(python) - code)
            assert not unused, f"stage {name}: dep {dep} covers {unused}, which the stage does not import"
    for module, data in DATA.items():
        if module in code:
            assert data in src_deps, f"stage {name} imports {module}, which reads {data}: add it to deps"


def _dag_edges() -> set[tuple[str, str]]:
    out = subprocess.run([*DVC, "dag", "--dot"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    edges = set()
    for line in out.stdout.splitlines():
        if "->" in line:
            a, b = (s.strip().strip(";").strip().strip('"') for s in line.split("->"))
            edges.add((a, b))
    return edges


def test_training_and_evaluation_wait_for_the_validation():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    edges = _dag_edges()
    for network, variant in params["train"]["kb_variant"].items():
        assert (f"validate@{variant}", f"train@{network}") in edges
    for variant in params["variants"]:
        assert (f"validate@{variant}", "evaluate") in edges  # no validation output is a leaf


def test_headline_metrics_are_small_committed_files_and_fit_a_terminal():
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    declared = []
    for name, stage in doc["stages"].items():
        body = stage.get("do", stage)
        for entry in body.get("metrics", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            declared.append(path)
            assert path.startswith("metrics/"), f"stage {name}: metric {path} is not a headline file in metrics/"
            assert isinstance(entry, dict) and entry[path] == {"cache": False}
            # the full results are reports: the stage's other JSON outputs are outs, not metrics
        assert not any(str(next(iter(o)) if isinstance(o, dict) else o).startswith("metrics/")
                       for o in body.get("outs", []))
    assert doc["metrics"] == ["metrics"]
    committed = subprocess.run(["git", "ls-files", "metrics"], cwd=REPO, capture_output=True, text=True).stdout.split()
    variants = yaml.safe_load((REPO / "params.yaml").read_text())["variants"]
    networks = yaml.safe_load((REPO / "params.yaml").read_text())["train"]["kb_variant"]
    expanded = {p.replace("${key}", k) for p in declared for k in (variants if "${key}" in p and "train" not in p
                                                                   else networks if "${key}" in p else [""])}
    assert expanded <= set(committed), sorted(expanded - set(committed))
    ignored = subprocess.run(["git", "check-ignore", *sorted(expanded)], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout == "", f"headline metrics must not be git-ignored: {ignored.stdout}"
    for path in expanded:
        assert len(json.loads((REPO / path).read_text())) <= 4
    out = subprocess.run([*DVC, "metrics", "show"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == len(expanded) + 1 and max(map(len, lines)) <= 200, out.stdout


def test_roc_curves_have_one_colour_per_network():
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    (roc,) = [p for p in doc["plots"] if isinstance(p, dict) and "ROC" in next(iter(p))]
    spec = next(iter(roc.values()))
    template = json.loads((REPO / ".dvc" / "plots" / f"{spec['template']}.json").read_text())
    assert template["encoding"]["color"]["field"] == "filename"  # one colour per ROC file (network)
    assert template["encoding"]["strokeDash"]["field"] == "rev"  # revisions dashed in `dvc plots diff`
    images = [p for p in doc["plots"] if isinstance(p, str)]
    assert "reports/evaluation/figures" in images and any(p.endswith("gallery.png") for p in images)


def test_dvc_plots_show_renders_offline(tmp_path, browser):
    """`dvc plots show` with the project's template (.dvc/config plots.html_template) loads no script from the
    network, and a vega plot renders in a real headless browser from the file alone."""
    import shutil as _shutil

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    config = (REPO / ".dvc" / "config").read_text()
    assert "html_template = plots/offline.html" in config
    work = tmp_path / "repo"
    work.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run([*DVC, "init", "-q"], cwd=work, check=True, env=ENV)
    _shutil.copytree(REPO / ".dvc" / "plots", work / ".dvc" / "plots", dirs_exist_ok=True)
    (work / ".dvc" / "config").write_text(config)
    (work / "roc.csv").write_text("fpr,tpr\n0,0\n0.1,0.6\n0.3,0.85\n1,1\n")
    (work / "dvc.yaml").write_text("plots:\n  - roc.csv:\n      x: fpr\n      y: tpr\n")
    run = subprocess.run([*DVC, "plots", "show", "-o", "out"], cwd=work, env=ENV, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    page = (work / "out" / "index.html").read_text()
    assert "<script src=" not in page.replace(" ", "") and "cdn." not in page  # nothing fetched
    assert "vegaEmbed" in page
    browser.get((work / "out" / "index.html").as_uri())
    # vega draws the curve into an SVG or a canvas once its inlined scripts have run
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.querySelectorAll('svg .mark-line, canvas').length") > 0)
    assert not browser.execute_script("return document.body.innerText").strip().startswith("Error")


def test_a_training_stage_tracks_every_train_key_and_only_its_own_per_network_entries():
    """train@<network>'s params are its training fingerprint's (train/kfold.py): every key of the train section,
    and of the per-network dicts only its own entry, so one network's epochs rerun one stage."""
    import dataclasses

    from lenssearch.config import TrainConfig
    from lenssearch.train.kfold import PER_NETWORK_KEYS

    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]["do"]
    listed = {p for p in stage["params"] if isinstance(p, str)}
    expected = {"base"} | {f"train.{f.name}" + (".${key}" if f.name in PER_NETWORK_KEYS else "")
                           for f in dataclasses.fields(TrainConfig)}
    assert listed == expected, (sorted(expected - listed), sorted(listed - expected))
    params = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    for key in PER_NETWORK_KEYS:  # DVC needs each network's entry in params.yaml
        assert set(params[key]) == set(params["kb_variant"]), key
