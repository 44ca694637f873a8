"""The main job on the small embedded config (`make demo`).

Today (foundation): generates the demo closure dataset (128² DNS → 32², H target), then prints a
summary table and writes figures of one test snapshot (ω, H, both sparse encodings) and the
energy spectra of the coarse and zero-shot fields into the workdir. Later stages (training, online
rollouts) extend this job.

    python experiments/demo.py --workdir=workdirs/demo
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from closurejax.data import generate, store
from closurejax.evaluation import metrics, plots

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(Path(__file__).parent / "configs" / "demo.py"), "Study config.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/demo", "Folder for everything the demo makes.")


def main(argv: list[str]) -> None:
    del argv
    workdir = Path(_WORKDIR.value).resolve()
    start = time.time()
    try:
        paths = generate.generate(_CONFIG.value, workdir)
    except (ValueError, FloatingPointError) as error:
        sys.exit(f"demo: {error}")
    data = store.open_dataset(paths["dataset"])
    figures = workdir / "figures"
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

    print(f"\ndemo dataset: {paths['dataset']}  ({time.time() - start:.1f} s)")
    print(f"{'array':<22}{'train shape':<22}{'mean':>12}{'std':>12}")
    for name, spec in data.specs.items():
        st = data.stats[name]
        shape = (len(data.split["train"]), *spec.shape)
        print(f"{name:<22}{str(shape):<22}{st['mean']:>12.4g}{st['std']:>12.4g}")
    interp_err = float(
        np.mean(metrics.relative_error(data.test["sparse_interpolated"][:], data.test["target"][:]))
    )
    print(
        "\nrelative error of the interpolated sparse measurements vs the closure (test): "
        f"{interp_err:.3f}"
    )
    print(f"figures: {figures}")


if __name__ == "__main__":
    app.run(main)
