"""The Colab notebooks in colabs/.

`test_quickstart_runs_headless` (marker `colab`, excluded from `make test`; run it with
`make test-colabs`) executes colabs/quickstart.ipynb in a fresh kernel of this interpreter
(nbclient) on its quick config (`CLOSUREJAX_COLAB_QUICK=1`) in a temporary workdir. It checks
that every cell runs, that the figures are shown inline, and that the pipeline wrote its files.
The fast checks of the stored notebook (valid, outputs cleared) run by default.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

COLABS = Path(__file__).resolve().parent.parent / "colabs"
QUICKSTART = COLABS / "quickstart.ipynb"
FIGURES = ("fields.png", "error.png", "enstrophy.png", "spread_skill.png", "spectra.png")


def test_quickstart_is_stored_clean() -> None:
    """nbformat 4, a python3 kernel, and no stored outputs (plain JSON: no extra dependency)."""
    nb = json.loads(QUICKSTART.read_text())
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    for cell in code:
        assert cell["outputs"] == [], "clear the notebook's outputs before saving"
        assert cell["execution_count"] is None, "clear the notebook's outputs before saving"


def _outputs(nb) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def _text(nb) -> str:
    parts = []
    for out in _outputs(nb):
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out and "text/plain" in out.data:
            parts.append(out.data["text/plain"])
    return "\n".join(parts)


@pytest.mark.colab
def test_quickstart_runs_headless(tmp_path: Path) -> None:
    import nbclient
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    nb = nbformat.read(QUICKSTART, as_version=4)
    nbformat.validate(nb)
    workdir = tmp_path / "work"
    # A kernelspec of THIS interpreter (the venv) only: a user's own "python3" kernel, or another
    # environment's, cannot be picked up.
    kernels = tmp_path / "kernels"
    spec_dir = kernels / "closurejax-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "closurejax test",
                "language": "python",
                "env": {
                    "CLOSUREJAX_COLAB_QUICK": "1",
                    "CLOSUREJAX_COLAB_WORKDIR": str(workdir),
                },
            }
        )
    )
    manager = KernelManager(
        kernel_name="closurejax-test",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]),
    )
    client = nbclient.NotebookClient(
        nb,
        km=manager,
        timeout=600,
        resources={"metadata": {"path": str(COLABS)}},  # run from colabs/, as when opened there
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"the quickstart notebook failed:\n{error}")

    text = _text(nb)
    assert f"python: {sys.executable}" in text, "the notebook did not run on this interpreter"
    assert "nothing to install" in text
    assert "(QUICK)" in text
    kinds = [mime for out in _outputs(nb) for mime in out.get("data", {})]
    # inline figures: the test snapshot, the loss curve, two rows of samples, five online PNGs
    assert kinds.count("image/png") >= 9, kinds
    assert "image/gif" in kinds, kinds

    assert (workdir / "dataset" / "manifest.json").is_file()
    assert (workdir / "score" / "metrics.jsonl").read_text().strip()
    results = json.loads((workdir / "simulation" / "results.json").read_text())
    assert set(results["sources"]) == {"none", "diffusion"}
    for entry in results["sources"].values():
        assert len(entry["metrics"]["ensemble_mean_relative_error"]) == len(results["times"])
    figures = workdir / "simulation" / "figures"
    for name in (*FIGURES, "rollout.gif"):
        assert (figures / name).stat().st_size > 0, name
