"""The house rules: imports run one way (cli → daemon → vision → wire; cli → aim → vision; central →
wire), no module of ours imports itself through others, a command's module stays a thin skin, the wire
contract loads without the vision stack, a central-only install works without OpenCV, and the
documented defaults files are what the settings' declarations say."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from central import config as central_config
from edge.daemon import config as edge_config
from edge.wire.config import document

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("cv2", "numpy", "scipy", "ai_edge_litert", "tflite_runtime", "tensorflow")
# Which packages each may import from; a package absent here may import anything.
ALLOWED = {
    "edge.wire": {"edge.wire"},
    "edge.vision": {"edge.vision", "edge.wire"},
    "edge.daemon": {"edge.daemon", "edge.vision", "edge.wire"},
    "edge.aim": {"edge.aim", "edge.vision", "edge.wire"},
    "central": {"central", "edge.wire"},
    "bench": {"bench", "edge", "central", "conversion"},
    "conversion": {"conversion", "edge.vision", "edge.wire"},
}
OURS = ("edge", "central", "bench", "conversion", "tests")
# A command's module parses, checks and calls; anything longer has grown work that belongs in a layer.
CLI_MAX_LINES = 400


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "edge" and len(parts) > 1 else parts[0]


def imports(path: Path) -> set[str]:
    """Every module of ours that `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in OURS}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def test_imports_run_one_way():
    wrong = []
    for path in sorted(p for top in OURS for p in (REPO / top).rglob("*.py")):
        allowed = ALLOWED.get(package_of(module_name(path)))
        if allowed is None:
            continue
        for name in imports(path):
            # `from edge import x` names a package, not a layer: judge by what it reaches.
            if name in ("edge", "edge.vision", "edge.daemon", "edge.wire", "edge.cli", "edge.aim"):
                continue
            if not any(name == a or name.startswith(a + ".") for a in allowed):
                wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, "\n".join(wrong)


def import_graph() -> dict[str, set[str]]:
    """Each module of ours and the modules of ours it imports (a name imported from a module
    counts as that module)."""
    paths = {module_name(p): p for top in OURS for p in (REPO / top).rglob("*.py")}

    def module_of(name: str) -> str:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name

    return {m: {module_of(n) for n in imports(p)} - {m, ""} for m, p in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it (the first repeated at the end); None if none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for name in sorted(graph.get(module, ())):
            if cycle := visit(name):
                return cycle
        done.add(path.pop())
        return None

    return next((cycle for root in sorted(graph) if (cycle := visit(root))), None)


def test_no_module_imports_itself_through_others():
    """A cycle, even through an import inside a function, ties two modules into one: neither can be
    understood, tested or moved to another layer alone."""
    cycle = find_cycle(import_graph())
    assert cycle is None, " → ".join(cycle)


def test_find_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": set(), "c": {"c2"}, "c2": {"c"}}) == ["c", "c2", "c"]


def test_each_command_module_is_a_thin_skin():
    long = {
        str(p.relative_to(REPO)): n
        for p in (REPO / "edge" / "cli").glob("*.py")
        if (n := len(p.read_text().splitlines())) > CLI_MAX_LINES
    }
    assert not long, f"over {CLI_MAX_LINES} lines: {long}; move the work into a layer below edge.cli"


def test_central_never_imports_vision_or_the_daemon():
    for path in (REPO / "central").rglob("*.py"):
        reached = imports(path)
        assert not [m for m in reached if m.startswith(("edge.vision", "edge.daemon", "edge.cli"))], path


def loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import edge.wire.contract",
        "import edge.wire.config, edge.wire.mqtt, edge.wire.export",
        "import central.config, central.store, central.subscriber",
        "from edge.cli.main import build_parser; build_parser()",
        "from edge.daemon.config import EdgeConfig; from edge.wire.config import load; load(EdgeConfig, environ={})",
    ],
)
def test_the_wire_contract_and_central_load_without_the_vision_stack(code):
    assert not loaded_after(code) & set(HEAVY)


def test_the_python_api_still_loads_the_pipeline_on_demand():
    assert "cv2" in loaded_after("from edge import Analyzer")


@pytest.mark.parametrize(("kind", "module"), [("edge", edge_config), ("central", central_config)])
def test_documented_defaults_files_are_generated_from_the_declarations(kind, module):
    config_class = module.EdgeConfig if kind == "edge" else module.CentralConfig
    shipped = (REPO / "deploy" / f"{kind}.toml").read_text()
    assert shipped == document(config_class, module.HEADER), (
        f"deploy/{kind}.toml is stale: run `aicctv config defaults {kind} > deploy/{kind}.toml`"
    )


def test_a_central_only_install_works_without_opencv(tmp_path):
    """`pip install '.[central]'` into a fresh venv: the central commands run, OpenCV is absent,
    and a command that needs vision says so in one line."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    install = subprocess.run([*pip, f"{REPO}[central]"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-2000:]
    aicctv = str(env_dir / "bin" / "aicctv")
    for command in (["central", "run", "--help"], ["central", "export", "--help"], ["stats", "--help"]):
        done = subprocess.run([aicctv, *command], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert done.returncode == 0 and "usage: aicctv" in done.stdout, (command, done.stderr)
    absent = subprocess.run([str(python), "-c", "import cv2"], capture_output=True, env=env, cwd=tmp_path)
    assert absent.returncode != 0
    image = tmp_path / "x.jpg"
    image.write_bytes(b"\xff\xd8")
    vision = subprocess.run([aicctv, "analyze", str(image)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert vision.returncode == 2
    assert vision.stderr.count("\n") == 1 and "pip install 'aicctv[edge]'" in vision.stderr, vision.stderr
