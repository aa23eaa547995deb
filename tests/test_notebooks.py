"""Every notebook in notebooks/ runs top to bottom (at the sizes of its parameter cell) and is
stored without outputs.

Each runs in a fresh kernel of this interpreter (a kernelspec written at test time points at
``sys.executable``, so the venv's packages are what the notebook imports) in a temporary working
directory; a failing cell fails the test with its source and traceback.
"""

import json
import os
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300
KERNEL = "horizon-test-python"


def test_notebooks_exist_and_are_stored_without_outputs():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "prm_walkthrough.ipynb", "horizon_curve.ipynb"}
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
        assert not dirty, f"{path.name}: code cells {dirty} hold outputs: clear them before committing"
        first = "".join(code[0]["source"])
        assert "OMP_WAIT_POLICY" in first and "parameters" in code[0]["metadata"].get("tags", []), (
            f"{path.name}: the first code cell sets OMP_WAIT_POLICY and holds the parameters (tag 'parameters')")


@pytest.fixture()
def kernel_of_this_python(tmp_path, monkeypatch):
    """A kernelspec that starts ``sys.executable -m ipykernel_launcher``, found first on JUPYTER_PATH."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "horizon test kernel", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(tmp_path / "jupyter"), os.environ.get("JUPYTER_PATH", "")]))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return KERNEL


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, kernel_of_this_python):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    workdir = tmp_path / "work"
    workdir.mkdir()
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=kernel_of_this_python,
                            resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    except CellExecutionError as error:  # its message holds the failing cell's source and traceback
        pytest.fail(f"{path.name}: a cell failed:\n{error}", pytrace=False)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), f"{path.name}: not every code cell ran"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0]}"
