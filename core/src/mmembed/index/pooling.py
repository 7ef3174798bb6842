"""Token pooling at write time: hierarchical clustering of a page's token vectors.

Behaves like colpali-engine's ``HierarchicalTokenPooler`` and PyLate's hierarchical
pooling: cosine distances ``1 - x·y`` between the page's tokens, Ward linkage over the rows
of that distance matrix (each token described by its distances to all others), the tree cut
into at most ``n_tokens // factor`` clusters (``fcluster`` ``maxclust``), and each cluster
replaced by the mean of its tokens. The references re-normalise every mean to unit length;
here a mean is rescaled to the mean norm of its tokens, which is the same for the unit-norm
tokens every multi-vector model emits and keeps magnitudes for tokens that are not.

The Euclidean distances between the distance-matrix rows are computed with one matrix
product instead of scipy's pairwise loop (``n^3`` flops through BLAS, ~40x faster for a
1,000-token page); the tree is the same up to floating-point rounding.

Pooled vectors no longer map one-to-one to image patches: consumers that need patch-level
vectors (similarity maps) read ``pooling`` from the manifest and re-encode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..types import MMEmbedError


def _scipy_hierarchy() -> Any:
    try:
        from scipy.cluster import hierarchy
    except ImportError as exc:
        raise MMEmbedError(f"token pooling needs scipy ({exc}); pip install 'mmembed-core[pooling]'") from exc
    return hierarchy


def pool_tokens(vectors: np.ndarray[Any, Any], factor: int) -> np.ndarray[Any, Any]:
    """``(clusters, dim)`` float32 pooled vectors of one page's ``(tokens, dim)`` vectors,
    ``clusters = max(tokens // factor, 1)``; a page of 0 or 1 token is returned as it is."""
    x = np.asarray(vectors, dtype=np.float32)  # (tokens, dim)
    n = x.shape[0]
    if factor <= 1 or n <= 1:
        return x
    hierarchy = _scipy_hierarchy()
    norms = np.linalg.norm(x, axis=1)  # (tokens,)
    unit = x / np.where(norms > 0, norms, 1.0)[:, None]
    distances = 1.0 - (unit @ unit.T).astype(np.float64)  # (tokens, tokens) cosine distances
    # Euclidean distances between the rows of `distances` (what the references feed Ward):
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, one GEMM.
    sq = np.einsum("ij,ij->i", distances, distances)  # (tokens,)
    gram = distances @ distances.T  # (tokens, tokens)
    between = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0))
    np.fill_diagonal(between, 0.0)
    condensed = between[np.triu_indices(n, k=1)]  # (tokens * (tokens - 1) / 2,)
    tree = hierarchy.linkage(condensed, method="ward")
    clusters = max(n // factor, 1)
    labels = hierarchy.fcluster(tree, t=clusters, criterion="maxclust") - 1  # (tokens,) from 0
    found = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=found).astype(np.float32)  # (found,)
    sums = np.zeros((found, x.shape[1]), dtype=np.float32)
    np.add.at(sums, labels, x)
    means = sums / counts[:, None]  # (found, dim)
    target = np.bincount(labels, weights=norms, minlength=found) / counts  # mean member norm
    lengths = np.linalg.norm(means, axis=1)
    scale = np.where(lengths > 0, target / np.where(lengths > 0, lengths, 1.0), 0.0)
    return (means * scale[:, None]).astype(np.float32)
