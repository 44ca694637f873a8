"""The main job on the small embedded config (`make demo`), end to end on a CPU in minutes:

1. generate the demo closure dataset (128² DNS → 32², H target; `experiments/generate_data.py`);
2. train the physical-space diffusion closure (conditional FNO score model) briefly
   (`experiments/train.py`);
3. the online test (`experiments/simulate.py`): the reference DNS of a test trajectory, and
   ensembles of coarse runs with the sampled closure and without closure;
4. print a table of the online errors and where the figures are.

Every stage resumes: re-running after an interruption continues where it stopped, and finished
stages are reused (delete the workdir to start over).

    python experiments/demo.py --workdir=workdirs/demo
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as `python experiments/<launcher>.py`: see experiments/__init__.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from absl import flags

from closurejax.data import generate, store
from closurejax.evaluation import metrics, online_study, plots
from closurejax.training import run
from experiments import launch

_CONFIG = launch.define_config(str(Path(__file__).parent / "configs" / "demo.py"), "Study config.")
_WORKDIR = launch.define_workdir("Folder for everything the demo makes.", default="workdirs/demo")
_NO_PROGRESS = flags.DEFINE_bool("no_progress", False, "Hide the progress bars.")


def _dataset_figures(paths: dict, figures: Path) -> None:
    data = store.open_dataset(paths["dataset"])
    snapshot = {
        name: np.asarray(data.test[name][0, -1])
        for name in ("omega", "target", "sparse_interpolated", "sparse_smoothed")
    }
    plots.field_panels(
        snapshot, figures / "test_snapshot.png", title="demo test trajectory, last snapshot"
    )
    curves = {"coarse ω (32²)": np.asarray(metrics.energy_spectrum(data.test["omega"][0, -1]))}
    if "zero_shot" in paths:
        zero = store.open_dataset(paths["zero_shot"])
        for name in zero.specs:
            if name.startswith("omega_"):
                size = name.split("_")[1]
                curves[f"zero-shot ω ({size}²)"] = np.asarray(
                    metrics.energy_spectrum(zero.test[name][0, -1])
                )
    plots.spectra(curves, figures / "spectra.png")


def main(argv: list[str]) -> None:
    del argv
    launch.quiet_library_logs()
    workdir = Path(_WORKDIR.value).resolve()
    config = _CONFIG.value
    progress = not _NO_PROGRESS.value
    timings = {}
    online_study.check_config(config)  # refuse a bad config before writing anything
    start = time.time()
    paths = generate.generate(config, workdir, show_progress=progress)
    _dataset_figures(paths, workdir / "figures")
    timings["data"] = time.time() - start

    start = time.time()
    run.train(config, workdir, show_progress=progress)
    timings["training"] = time.time() - start

    start = time.time()
    results = online_study.run_online(config, workdir, show_progress=progress)
    timings["online"] = time.time() - start

    print()
    print(online_study.format_table(results))
    final = {
        name: entry["metrics"]["ensemble_mean_relative_error"][-1]
        for name, entry in results["sources"].items()
    }
    if "none" in final and "diffusion" in final:
        verdict = "helps" if final["diffusion"] < final["none"] else "does NOT help"
        print(
            f"\nat t = {results['times'][-1]:g} s the sampled closure {verdict}: ensemble-mean "
            f"error {final['diffusion']:.3f} with it, {final['none']:.3f} without"
        )
    print("stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print(f"dataset figures: {workdir / 'figures'}")
    print(f"online results:  {workdir / 'simulation' / 'results.json'}")
    print(f"online figures:  {workdir / 'simulation' / 'figures'} (fields, error, spectra, GIF)")


if __name__ == "__main__":
    launch.run(main)
