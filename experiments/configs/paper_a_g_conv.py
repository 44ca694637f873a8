"""Paper A, G target, with the "conv" sparse encoding: the lattice zero-filled, smoothed by a
7×7 box and rescaled (arXiv 2408.02965, the conditioning; offline error 0.093 at 64²)."""

from experiments.configs.paper_a_g import get_config as paper_a_g_config


def get_config():
    config = paper_a_g_config()
    config.unlock()
    config.name = "paper_a_g_conv"
    config.model.conditions = ("omega", "sparse_smoothed")
    config.lock()
    return config
