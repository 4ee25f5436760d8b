"""HuBERT's discrete targets: k-means clusters of acoustic features (MFCC or log-mel frames),
fitted offline, then assigned per frame and aligned to the encoder's frames."""

from __future__ import annotations

import numpy as np


def fit_cluster_centers(
    features: np.ndarray,
    num_clusters: int,
    seed: int = 0,
    batch_size: int = 10000,
    max_iter: int = 100,
    n_init: int = 20,
) -> np.ndarray:
    """Fit k-means on acoustic feature frames (HuBERT's first iteration: 39-dim MFCC with deltas,
    100 clusters) with scikit-learn's ``MiniBatchKMeans``, set up as in HuBERT's reference
    recipe (k-means++ init, no centre reassignment).

    Args:
        features: ``(N, D)`` float frames pooled from many utterances (e.g. ssl-data's log-mel
            or MFCC frames, one row per 10 ms hop).
        num_clusters: C >= 2 clusters, at most N.
        seed: Seed of the k-means++ initialisation and mini-batch draws.
        batch_size: Mini-batch size in frames.
        max_iter: Passes over the data.
        n_init: Initialisations tried (the best inertia is kept).

    Returns:
        ``(C, D) float32`` cluster centres (store them with the run; :func:`assign_clusters`
        labels new frames with them).

    Raises:
        ValueError: ``features`` is not 2-D, holds non-finite values, or has fewer than
            ``num_clusters`` rows; ``num_clusters < 2``.

    Reference: Hsu et al., "HuBERT: Self-Supervised Speech Representation Learning by Masked
    Prediction of Hidden Units", arXiv:2106.07447, section III-A.
    """
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    if num_clusters < 2 or num_clusters > x.shape[0]:
        raise ValueError(f"num_clusters must be in [2, N={x.shape[0]}], got {num_clusters}")
    if not np.isfinite(x).all():
        raise ValueError("features hold NaN or infinite values")
    # scikit-learn is imported here: only the offline target fitting needs it.
    from sklearn.cluster import MiniBatchKMeans  # type: ignore[import-untyped]

    kmeans = MiniBatchKMeans(
        n_clusters=num_clusters,
        init="k-means++",
        max_iter=max_iter,
        batch_size=batch_size,
        n_init=n_init,
        reassignment_ratio=0.0,
        max_no_improvement=100,
        random_state=seed,
    )
    kmeans.fit(x.astype(np.float32))
    return np.asarray(kmeans.cluster_centers_, dtype=np.float32)


def assign_clusters(features: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """The nearest centre (squared Euclidean distance) of every frame.

    Args:
        features: ``(N, D)`` float frames.
        centers: ``(C, D)`` float centres from :func:`fit_cluster_centers`.

    Returns:
        ``(N,) int64`` cluster ids in ``[0, C)``.

    Raises:
        ValueError: Not 2-D, or the widths differ.
    """
    x = np.asarray(features, dtype=np.float64)
    c = np.asarray(centers, dtype=np.float64)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"features must be (N, D) and centers (C, D), got {x.shape} and {c.shape}")
    distances = (x**2).sum(1)[:, None] - 2.0 * x @ c.T + (c**2).sum(1)[None, :]
    return np.asarray(distances.argmin(axis=1), dtype=np.int64)


def align_labels_to_frames(
    labels: np.ndarray,
    num_frames: int,
    frame_hop: int = 320,
    frame_center: float = 200.0,
    label_hop: int = 160,
    label_center: float = 0.0,
    ignore_index: int = -100,
) -> np.ndarray:
    """Give each encoder frame the label of the acoustic-feature frame nearest its centre.

    Encoder frame t is centred at ``t * frame_hop + frame_center`` samples (the wav2vec 2.0 /
    HuBERT CNN: hop 320, receptive field 400, so centre 200); label frame i at
    ``i * label_hop + label_center`` (a 10 ms STFT at 16 kHz: hop 160, centre 0 with
    ``center=True`` padding, or half the window without it). Frame t takes label
    ``round((t * frame_hop + frame_center - label_center) / label_hop)``; frames whose nearest
    label index falls outside the labels get ``ignore_index``.

    Args:
        labels: ``(L,)`` integer cluster ids of one utterance, from :func:`assign_clusters`.
        num_frames: F, the utterance's real encoder frames (``SpeechEncoder.num_frames``).
        frame_hop: Encoder hop in samples (``SpeechEncoder.samples_per_frame``).
        frame_center: Centre of encoder frame 0 in samples
            (``SpeechEncoder.receptive_field / 2``).
        label_hop: Label (feature) hop in samples.
        label_center: Centre of label frame 0 in samples.
        ignore_index: Value for frames without a label (the loss skips it).

    Returns:
        ``(F,) int64`` targets. Pad a batch with ``ignore_index`` to the padded frame count.

    Raises:
        ValueError: ``labels`` is not 1-D, ``num_frames < 0`` or a hop < 1.

    Reference: Hsu et al., arXiv:2106.07447 (targets at the model's frame rate).
    """
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"labels must be (L,), got shape {lab.shape}")
    if num_frames < 0 or frame_hop < 1 or label_hop < 1:
        raise ValueError(
            f"need num_frames >= 0 and hops >= 1, got {num_frames}, {frame_hop}, {label_hop}"
        )
    centres = np.arange(num_frames) * frame_hop + frame_center
    index = np.floor((centres - label_center) / label_hop + 0.5).astype(np.int64)
    valid = (index >= 0) & (index < len(lab))
    out = np.full(num_frames, ignore_index, dtype=np.int64)
    out[valid] = lab[index[valid]]
    return out


__all__ = ["align_labels_to_frames", "assign_clusters", "fit_cluster_centers"]
