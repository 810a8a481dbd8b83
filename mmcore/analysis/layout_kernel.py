"""umap-learn's layout epoch (its `optimize_layout_euclidean` inner step, seeded and sequential) called without
holding the GIL, so the display map and the clustering map are optimised on two cores at once.

umap compiles the epoch without `nogil`: two UMAPs in two threads would take turns. This module wraps umap's own
compiled epoch in a function compiled with `nogil=True` (the same arithmetic, the same results) and `install()`
makes umap call it. Imported only when a map is fitted: it compiles with numba (cached on disk, see
projection.use_numba_cache).
"""

from __future__ import annotations

import numba
from umap import layouts

_epoch = layouts._nb_optimize_layout_euclidean_single_epoch  # umap's own, compiled for one thread


@numba.njit(nogil=True, cache=True)
def epoch_without_gil(head_embedding, tail_embedding, head, tail, n_vertices, epochs_per_sample, a, b, rng_state_per_sample,
                      gamma, dim, move_other, alpha, epochs_per_negative_sample, epoch_of_next_negative_sample,
                      epoch_of_next_sample, n, densmap_flag, dens_phi_sum, dens_re_sum, dens_re_cov, dens_re_std, dens_re_mean,
                      dens_lambda, dens_R, dens_mu, dens_mu_tot):
    _epoch(head_embedding, tail_embedding, head, tail, n_vertices, epochs_per_sample, a, b, rng_state_per_sample, gamma, dim,
           move_other, alpha, epochs_per_negative_sample, epoch_of_next_negative_sample, epoch_of_next_sample, n, densmap_flag,
           dens_phi_sum, dens_re_sum, dens_re_cov, dens_re_std, dens_re_mean, dens_lambda, dens_R, dens_mu, dens_mu_tot)


def install() -> None:
    """Make umap's sequential layout optimisation (what a seeded UMAP and `projection.place` run) release the GIL."""
    layouts._nb_optimize_layout_euclidean_single_epoch = epoch_without_gil
