"""k-means' interval certificate (eq. V, and eq. V2 over L2 balls) computed by own cluster in
matrix products against the elementwise form it replaced, side by side on the same inputs.

    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/kmeans_certificate.py [--k 856]
        [--n 512] [--rounds 3] [--out F]

A k-means with ``--k`` clusters (advlab's ``KMeans``, seeded, 20 Lloyd iterations) on 10,000
MNIST training images, and the first ``--n`` test images certified at L-inf eps 0.01 and 0.05
and L2 eps 0.5 and 2, clusters mapped to classes by majority vote: the bound of ``kmeans_is_certified``
(``advlab.defenses.kmeans_ibp._certified``, grouped) against ``_elementwise`` below, its
previous body, which builds the (n, k, D) array of differences in chunks, both on the same input
sets. Prints one JSON line per setting: the median seconds
of each over ``--rounds`` alternating rounds, their ratio (elementwise / grouped: > 1, the
grouped form is faster), and whether the two certify the same inputs. Not a test: compare
numbers from one run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from advlab.cluster import KMeans, KMeansCells, kmeans_cells, majority_vote_mapping
from advlab.data import load_dataset
from advlab.defenses.interval_bounds import _Box, _Ellipsoid, _input_set
from advlab.defenses.kmeans_ibp import _certified

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from benchmarks._cli import rounds_parser, write_rows

SETTINGS = (("linf", 0.01), ("linf", 0.05), ("l2", 0.5), ("l2", 2.0))


def _elementwise(cells: KMeansCells, value: _Box, own: torch.Tensor, classes: torch.Tensor):
    """The bound as it was computed before: (u_i - u_j) for each input and cluster, in chunks
    of about 2**24 numbers."""
    lo, hi = value.lo.flatten(1).double(), value.hi.flatten(1).double()
    m, r = (hi + lo) / 2, (hi - lo) / 2
    ellipsoid = value if isinstance(value, _Ellipsoid) else None
    if ellipsoid is not None:
        centre, scale = ellipsoid.centre.flatten(1).double(), ellipsoid.scale.flatten(1).double()
    sites, levels = cells.sites, cells.levels
    rows = max(1, 2**24 // sites.numel())
    out = []
    for s in range(0, len(m), rows):
        i = own[s : s + rows]
        w = sites[i][:, None, :] - sites[None, :, :]
        ms, rs = m[s : s + rows, None, :], r[s : s + rows, None, :]
        bound = (
            2 * ((w * ms).sum(-1) - (w.abs() * rs).sum(-1)) + levels[None, :] - levels[i][:, None]
        )
        if ellipsoid is not None:
            cs, ss = centre[s : s + rows, None, :], scale[s : s + rows, None, :]
            ball = 2 * ((w * cs).sum(-1) - ellipsoid.eps * (w * ss).norm(dim=-1))
            bound = torch.maximum(bound, ball + levels[None, :] - levels[i][:, None])
        excluded = torch.zeros_like(bound, dtype=torch.bool)
        excluded.scatter_(1, i[:, None], True)
        excluded |= classes[None, :] == classes[i][:, None]
        out.append((bound.masked_fill(excluded, float("inf")) > 0).all(1))
    return torch.cat(out)


def main() -> None:
    parser = rounds_parser(__doc__)
    parser.add_argument("--k", type=int, default=856)
    parser.add_argument("--n", type=int, default=512)
    args = parser.parse_args()
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    data = train.data[:10_000].astype(np.float64)
    km = KMeans(args.k, max_iter=20, random_state=0).fit(data)
    mapping = majority_vote_mapping(km.labels_, train.labels[:10_000], args.k)
    x = torch.from_numpy(test.data[: args.n].astype(np.float64))
    cells = kmeans_cells(km)
    own, classes = cells.assign(x), torch.as_tensor(mapping)
    rows = []
    for norm, eps in SETTINGS:
        value = _input_set(x, eps, None, (0.0, 1.0), norm)
        seconds: dict[str, list[float]] = {"elementwise": [], "grouped": []}
        for _ in range(args.rounds):
            start = time.perf_counter()
            old = _elementwise(cells, value, own, classes)
            seconds["elementwise"].append(time.perf_counter() - start)
            start = time.perf_counter()
            new = _certified(cells, value, own, classes)
            seconds["grouped"].append(time.perf_counter() - start)
        one, many = (float(np.median(seconds[key])) for key in ("elementwise", "grouped"))
        rows.append({"k": args.k, "d": x.shape[1], "n": args.n, "norm": norm, "eps": eps,
                     "seconds_elementwise": round(one, 3), "seconds_grouped": round(many, 3),
                     "ratio": round(one / many, 1), "same_certified": bool(torch.equal(old, new)),
                     "certified": int(new.sum())})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    write_rows(args.out, rows, args.rounds)


if __name__ == "__main__":
    main()
