"""``load_dataset``: one typed record for image sets (MNIST, Fashion-MNIST, 8x8 digits)
and tabular sets (Iris, breast cancer, seeded blobs)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advlab.data.idx import load_idx
from advlab.data.sources import IDX_CHECKSUMS, locate
from advlab.utils.cache import arrays_sha256
from advlab.utils.validation import check_class_labels

SPLITS = ("train", "test", "all")
IDX_DATASETS = ("mnist", "fashion-mnist")
SKLEARN_DATASETS = ("digits", "iris", "breast-cancer")
DATASETS = (*IDX_DATASETS, *SKLEARN_DATASETS, "blobs")

CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}

# scikit-learn's small sets have no official split: a fixed stratified 80/20 split.
SKLEARN_TEST_FRACTION = 0.2
SKLEARN_SPLIT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset.

    Attributes
    ----------
    name, split : str
        What was asked for.
    data : ndarray of shape (N, D), float32
        One flattened sample per row.
    labels : ndarray of shape (N,), int64
        The class of each sample.
    class_names : list of str
        One name per label value.
    sha256 : str
        SHA-256 identifying the source bytes (for IDX sets, of the decompressed files).
    images : ndarray of shape (N, 1, H, W), float32, or None
        Pixels in [0, 1] for image sets, else None.
    sources : dict of str to str
        Per source file, its SHA-256.
    """

    name: str
    split: str
    data: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    sha256: str
    images: np.ndarray | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def from_arrays(
        cls,
        X: Any,
        y: Any,
        name: str = "custom",
        split: str = "train",
        class_names: list[str] | None = None,
    ) -> Dataset:
        """Your own data as a Dataset, its checksum computed from the arrays.

        The checksum keys everything cached from the data (trained weights, adversarial
        pools), so two different arrays never share a cached artefact, and the same arrays
        find theirs again.

        Parameters
        ----------
        X : array-like of shape (N, D), (N, H, W) or (N, C, H, W)
            Tabular rows, or images with pixels in [0, 1] (3-D: one channel).
        y : array-like of shape (N,)
            Integer class labels in 0..n_classes-1.
        name, split : str, default='custom', 'train'
            What the data is called in logs and manifests.
        class_names : list of str or None, default=None
            One name per label value; None names them by their numbers.

        Returns
        -------
        Dataset
            ``data`` (N, D) float32, ``labels`` int64 and, for images, ``images``
            (N, C, H, W) float32.
        """
        data = np.asarray(X, dtype=np.float32)
        if data.ndim not in (2, 3, 4) or len(data) == 0:
            raise ValueError(
                f"X must have shape (N, D), (N, H, W) or (N, C, H, W) with N > 0, got {data.shape}"
            )
        if not np.isfinite(data).all():
            raise ValueError("X contains NaN or infinite values")
        labels = check_class_labels(y, len(data), non_negative=True)
        n_classes = int(labels.max()) + 1
        names = [str(i) for i in range(n_classes)] if class_names is None else list(class_names)
        if len(names) < n_classes:
            raise ValueError(f"class_names has {len(names)} names for labels up to {n_classes - 1}")
        images = None
        if data.ndim > 2:
            images = data[:, None] if data.ndim == 3 else data
            if images.min() < 0 or images.max() > 1:
                raise ValueError(
                    f"images must have pixels in [0, 1], got range [{images.min():.3g}, "
                    f"{images.max():.3g}] (divide 8-bit images by 255)"
                )
        checksum = arrays_sha256({"X": data, "y": labels})
        return cls(name, split, data.reshape(len(data), -1), labels, names, checksum, images)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: np.ndarray | slice) -> Dataset:
        """A new Dataset holding the rows ``index`` (checksum extended with the index)."""
        rows = np.arange(len(self))[index]
        digest = hashlib.sha256((self.sha256 + ":").encode() + rows.astype(np.int64).tobytes())
        images = None if self.images is None else self.images[rows]
        return Dataset(
            self.name,
            self.split,
            self.data[rows],
            self.labels[rows],
            self.class_names,
            digest.hexdigest(),
            images,
            dict(self.sources),
        )


def load_dataset(
    name: str, split: str = "train", root: str | Path | None = None, **options
) -> Dataset:
    """Load ``name`` (``mnist``, ``fashion-mnist``, ``digits``, ``iris``, ``breast-cancer``,
    ``blobs``) for ``split`` (``train``, ``test`` or ``all``).

    IDX sets are looked for as described in ``advlab.data.sources``. ``blobs`` takes
    the options of ``sklearn.datasets.make_blobs`` (``n_samples``, ``centers``,
    ``n_features``, ``cluster_std``, ``random_state``; defaults 1000, 3, 2, 1.0, 0).

    Parameters
    ----------
    name : str
        mnist, fashion-mnist, digits, iris, breast-cancer or blobs.
    split : {'train', 'test', 'all'}, default='train'
        Which part; the scikit-learn sets are split with a fixed seed.
    root : str, Path or None, default=None
        Folder holding the IDX files; None looks where advlab.data.sources says (ADVLAB_DATA, the
        cache, a download when ADVLAB_DOWNLOAD=1).
    **options
        Options of blobs only (n_samples, centers, n_features, cluster_std, random_state).

    Returns
    -------
    Dataset
        The samples, labels and checksums.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if options and name != "blobs":
        raise ValueError(f"dataset {name!r} takes no options, got {sorted(options)}")
    if name in IDX_DATASETS:
        return _load_idx_dataset(name, split, root)
    if name == "blobs":
        return _load_blobs(split, **options)
    return _load_sklearn(name, split)


def _load_idx_dataset(name: str, split: str, root: str | Path | None) -> Dataset:
    if split == "all":
        parts = [_load_idx_dataset(name, s, root) for s in ("train", "test")]
        return _concat(parts, name, split)
    prefix = "train" if split == "train" else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    paths = [locate(name, stem, root) for stem in stems]  # all located before parsing
    pixels, img_sha = load_idx(paths[0], IDX_CHECKSUMS[name][stems[0]], expected_ndim=3)
    labels, lbl_sha = load_idx(paths[1], IDX_CHECKSUMS[name][stems[1]], expected_ndim=1)
    if pixels.shape[0] != labels.shape[0]:
        raise ValueError(f"{name}/{split}: {pixels.shape[0]} images but {labels.shape[0]} labels")
    images = (pixels.astype(np.float32) / 255.0)[:, None, :, :]
    sources = {stems[0]: img_sha, stems[1]: lbl_sha}
    return Dataset(
        name=name,
        split=split,
        data=images.reshape(len(images), -1),
        labels=labels.astype(np.int64),
        class_names=CLASS_NAMES[name],
        sha256=_combine(sources),
        images=images,
        sources=sources,
    )


def _load_sklearn(name: str, split: str) -> Dataset:
    from sklearn import datasets as skd

    loader = {
        "digits": skd.load_digits,
        "iris": skd.load_iris,
        "breast-cancer": skd.load_breast_cancer,
    }[name]
    bunch = loader()
    data = np.asarray(bunch.data, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    images = None
    if name == "digits":
        data = data / 16.0  # pixel values 0..16 -> [0, 1]
        images = data.reshape(-1, 1, 8, 8)
    sha = hashlib.sha256(data.tobytes() + labels.tobytes()).hexdigest()
    full = Dataset(name, "all", data, labels, [str(c) for c in bunch.target_names], sha, images)
    return full if split == "all" else _sklearn_split(full, split)


def _sklearn_split(full: Dataset, split: str) -> Dataset:
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(
        np.arange(len(full)),
        test_size=SKLEARN_TEST_FRACTION,
        random_state=SKLEARN_SPLIT_SEED,
        stratify=full.labels,
    )
    part = full.subset(np.sort(train_idx if split == "train" else test_idx))
    return Dataset(
        part.name, split, part.data, part.labels, part.class_names, part.sha256, part.images
    )


def _load_blobs(
    split: str,
    n_samples: int = 1000,
    centers: int = 3,
    n_features: int = 2,
    cluster_std: float = 1.0,
    random_state: int = 0,
) -> Dataset:
    from sklearn.datasets import make_blobs

    # train and test are two independent draws around the same centres.
    seed = random_state + {"train": 0, "test": 1, "all": 2}[split]
    centre_rng = np.random.default_rng(random_state)
    centre_array = centre_rng.uniform(-10, 10, size=(centers, n_features))
    x, y = make_blobs(
        n_samples=n_samples, centers=centre_array, cluster_std=cluster_std, random_state=seed
    )
    data = x.astype(np.float32)
    labels = y.astype(np.int64)
    sha = hashlib.sha256(data.tobytes() + labels.tobytes()).hexdigest()
    return Dataset("blobs", split, data, labels, [str(i) for i in range(centers)], sha)


def _combine(sources: dict[str, str]) -> str:
    return hashlib.sha256(
        "".join(f"{k}={v};" for k, v in sorted(sources.items())).encode()
    ).hexdigest()


def _concat(parts: list[Dataset], name: str, split: str) -> Dataset:
    sources = {k: v for p in parts for k, v in p.sources.items()}
    images = (
        None
        if parts[0].images is None
        else np.concatenate([p.images for p in parts if p.images is not None])
    )
    return Dataset(
        name,
        split,
        np.concatenate([p.data for p in parts]),
        np.concatenate([p.labels for p in parts]),
        parts[0].class_names,
        _combine(sources),
        images,
        sources,
    )
