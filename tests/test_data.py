from __future__ import annotations

import gzip
import http.server
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from advlab.data import DataNotFoundError, IDXError, load_dataset, load_idx, parse_idx, sources
from advlab.data.sources import FileSpec, download
from advlab.utils.io import sha256_bytes
from tests.conftest import DATA_ROOT, needs_fashion, needs_mnist


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@needs_mnist
def test_mnist_train_matches_reference_counts():
    d = load_dataset("mnist", "train")
    assert d.images.shape == (60000, 1, 28, 28)
    assert d.data.shape == (60000, 784) and d.data.dtype == np.float32
    assert d.labels.dtype == np.int64 and list(d.labels[:5]) == [5, 0, 4, 1, 9]
    assert list(np.bincount(d.labels)) == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert d.images.min() == 0.0 and d.images.max() == 1.0
    assert d.images.mean() == pytest.approx(0.1307, abs=1e-4)
    assert d.images.std() == pytest.approx(0.3081, abs=1e-4)
    assert len(d.sha256) == 64 and len(d.sources) == 2


@needs_mnist
def test_mnist_test_and_all_splits():
    test = load_dataset("mnist", "test")
    assert list(np.bincount(test.labels)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    both = load_dataset("mnist", "all")
    assert len(both) == 70000 and both.sha256 not in (test.sha256,)


@needs_fashion
def test_fashion_mnist_loads():
    d = load_dataset("fashion-mnist", "test")
    assert d.images.shape == (10000, 1, 28, 28)
    assert np.all(np.bincount(d.labels) == 1000)
    assert d.class_names[9] == "Ankle boot"
    assert 0.0 <= d.images.min() and d.images.max() <= 1.0


@pytest.mark.parametrize(
    ("name", "n_all", "dim", "n_classes"),
    [("digits", 1797, 64, 10), ("iris", 150, 4, 3), ("breast-cancer", 569, 30, 2)],
)
def test_sklearn_sets(name, n_all, dim, n_classes):
    full = load_dataset(name, "all")
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    assert full.data.shape == (n_all, dim) and full.data.dtype == np.float32
    assert len(train) + len(test) == n_all
    assert set(np.unique(train.labels)) == set(range(n_classes))
    assert len(full.class_names) == n_classes
    # the split is fixed: loading twice gives the same rows
    assert train.sha256 == load_dataset(name, "train").sha256
    if name == "digits":
        assert train.images.shape == (len(train), 1, 8, 8)
        assert 0.0 <= train.images.min() and train.images.max() <= 1.0


def test_blobs_are_seeded():
    a = load_dataset("blobs", n_samples=200, centers=4, random_state=3)
    b = load_dataset("blobs", n_samples=200, centers=4, random_state=3)
    c = load_dataset("blobs", n_samples=200, centers=4, random_state=4)
    assert np.array_equal(a.data, b.data) and a.sha256 == b.sha256
    assert not np.array_equal(a.data, c.data)
    assert a.data.shape == (200, 2) and set(np.unique(a.labels)) == {0, 1, 2, 3}


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("iris", "validation")
    with pytest.raises(ValueError, match="takes no options"):
        load_dataset("iris", n_samples=3)


def test_parse_idx_roundtrip_and_errors():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    payload = _idx_bytes(arr)
    assert np.array_equal(parse_idx(payload), arr)
    with pytest.raises(IDXError, match="bad magic"):
        parse_idx(b"\x00\x00\x0d\x03" + payload[4:])
    with pytest.raises(IDXError, match="does not match header"):
        parse_idx(payload[:-1], "x.idx")
    with pytest.raises(IDXError, match="too short"):
        parse_idx(b"\x00\x00")
    with pytest.raises(IDXError, match="expected 1"):
        parse_idx(payload, expected_ndim=1)


def test_corrupt_truncated_and_wrong_checksum_files(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    payload = _idx_bytes(arr)
    good = tmp_path / "good-idx2-ubyte.gz"
    good.write_bytes(gzip.compress(payload))
    out, digest = load_idx(good, sha256_bytes(payload))
    assert np.array_equal(out, arr) and digest == sha256_bytes(payload)

    truncated = tmp_path / "trunc.gz"
    truncated.write_bytes(gzip.compress(payload)[:-6])
    with pytest.raises(IDXError, match=r"trunc.gz.*corrupt or truncated"):
        load_idx(truncated)
    with pytest.raises(IDXError, match=r"good-idx2-ubyte.gz: SHA-256"):
        load_idx(good, "0" * 64)
    short_raw = tmp_path / "short-raw"
    short_raw.write_bytes(payload[:-3])
    with pytest.raises(IDXError, match="short-raw: length"):
        load_idx(short_raw)


def test_wrong_file_in_data_root_is_rejected(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    fake = gzip.compress(_idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8)))
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / f"{stem}.gz").write_bytes(fake)
    monkeypatch.delenv("ADVLAB_DATA", raising=False)
    with pytest.raises(IDXError, match=r"t10k-images-idx3-ubyte.gz: SHA-256"):
        load_dataset("mnist", "test", root=tmp_path)


def test_missing_files_offline_error_names_three_ways(tmp_path, monkeypatch):
    monkeypatch.delenv("ADVLAB_DATA", raising=False)
    monkeypatch.setattr(sources, "DEBIAN_DIRS", {})
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("fashion-mnist", "train", root=tmp_path)
    msg = str(info.value)
    assert "train-images-idx3-ubyte" in msg and "ADVLAB_DATA" in msg and "root=" in msg
    assert "ADVLAB_OFFLINE" in msg


class _Server:
    """A local HTTP server on 127.0.0.1 serving one folder; counts requests."""

    def __init__(self, folder: Path) -> None:
        def handler(*args, **kwargs):
            return http.server.SimpleHTTPRequestHandler(*args, directory=str(folder), **kwargs)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _served_labels(tmp_path: Path) -> tuple[Path, FileSpec, bytes]:
    """A served t10k labels file: the real one when ADVLAB_DATA has it, else a synthetic one."""
    served = tmp_path / "served"
    served.mkdir()
    real = Path(DATA_ROOT or "/nonexistent") / "mnist" / "t10k-labels-idx1-ubyte.gz"
    if real.is_file():
        shutil.copy(real, served / real.name)
        payload = gzip.decompress(real.read_bytes())
    else:
        payload = _idx_bytes(np.arange(10, dtype=np.uint8))
        (served / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(payload))
    return served, FileSpec("mnist", "t10k-labels-idx1-ubyte", sha256_bytes(payload)), payload


def test_download_from_local_server(tmp_path):
    served, spec, payload = _served_labels(tmp_path)
    dest = tmp_path / "cache"
    with _Server(served) as server:
        bad_mirror = server.url + "missing/"
        path = download(spec, dest, mirrors=[bad_mirror, server.url], retries=2, backoff=0)
    assert path == dest / "t10k-labels-idx1-ubyte.gz"
    assert gzip.decompress(path.read_bytes()) == payload
    assert [p.name for p in dest.iterdir()] == ["t10k-labels-idx1-ubyte.gz"]  # no temp left


def test_download_wrong_checksum_leaves_nothing(tmp_path):
    served, spec, _ = _served_labels(tmp_path)
    wrong = FileSpec(spec.dataset, spec.stem, "f" * 64)
    dest = tmp_path / "cache"
    with _Server(served) as server, pytest.raises(DataNotFoundError, match="does not match"):
        download(wrong, dest, mirrors=[server.url], retries=1, backoff=0)
    assert not dest.exists() or not any(dest.iterdir())


def test_download_retries_with_injected_opener(tmp_path):
    _, spec, payload = _served_labels(tmp_path)
    calls = []

    class Response:
        def __init__(self, data):
            self.data, self.length = data, len(data)

        def read(self, n):
            chunk, self.data = self.data[:n], self.data[n:]
            return chunk

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def flaky(url):
        calls.append(url)
        if len(calls) < 3:
            raise OSError("connection reset")
        return Response(gzip.compress(payload))

    path = download(spec, tmp_path, mirrors=["http://mirror.invalid/"], opener=flaky, backoff=0)
    assert len(calls) == 3 and gzip.decompress(path.read_bytes()) == payload
