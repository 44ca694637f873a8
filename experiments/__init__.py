"""The launchers and study configs: used from a checkout, not installed (the package ships
`closurejax` only).

Config values live here (`experiments/configs/<study>.py`); their schema, defaults and validation
live in the library (`closurejax.config` and the sections' dataclasses), which never imports
`experiments`. Every launcher runs as a script from the repository root, e.g.

    python experiments/train.py --config=experiments/configs/paper_a_h.py --workdir=DIR

and first puts the repository root at the head of `sys.path` (its `if __name__ == "__main__"`
lines above the imports), so `closurejax` and `experiments` — `experiments.launch`, the study
files, and a study file that builds on another (`from experiments.configs import paper_b`,
loaded by absl's config flags) — come from this checkout, whatever is installed.
"""
