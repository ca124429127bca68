"""``kmeans_is_certified``: IBP through a network and the Voronoi bound of eq. V. Without a
network it is the boxed Voronoi radius itself; behind a pipeline's affine steps and through a
ReLU network it is sound: no attack breaks a certified input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from advlab.attacks.evasion import KMeansMinimalAttack, KMeansPGD, kmeans_certified_radius
from advlab.cluster import KMeans, majority_vote_mapping
from advlab.data import load_dataset
from advlab.defenses import kmeans_is_certified


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", "train")
    return torch.from_numpy(data.images[:300]), data.labels[:300]


def test_without_a_network_it_is_the_boxed_voronoi_radius(digits):
    x, y = digits
    flat = x.flatten(1).numpy()
    km = KMeans(20, random_state=0).fit(flat)
    mapping = majority_vote_mapping(km.labels_, y, 20)
    for target in (mapping, None):
        radius = kmeans_certified_radius(km, flat, "linf", mapping=target, bounds=(0.0, 1.0))
        for eps in (0.0, 0.02, 0.05, 0.1):
            got = kmeans_is_certified(km, x, eps, mapping=target).numpy()
            np.testing.assert_array_equal(got, radius > eps)
        assert 0 < np.mean(radius > 0.05) < 1


def test_behind_a_pipeline_it_lies_below_the_exact_minimum(digits):
    """Certified inputs are a subset of those whose exact minimal perturbation exceeds eps,
    and some are certified."""
    x, y = digits
    flat = x.flatten(1).double().numpy()
    pipe = make_pipeline(StandardScaler(), PCA(10, random_state=0), KMeans(15, random_state=0))
    pipe.fit(flat)
    mapping = majority_vote_mapping(pipe.predict(flat), y, 15)
    exact = KMeansMinimalAttack(pipe, mapping, "linf", "other-class", exact=True, max_size=0.05)
    sizes = exact(x[:80].double()).distances.numpy()
    for eps in (0.01, 0.03):
        certified = kmeans_is_certified(pipe, x[:80], eps, mapping=mapping).numpy()
        assert certified.any() and np.all(sizes[certified] > eps)


def test_through_a_relu_network_no_attack_breaks_a_certified_input(digits):
    """k-means on a ReLU network's 8-d embedding: at each eps, PGD through the network (random
    starts, 60 steps), which breaks over 10 % of the inputs, breaks no certified one; the
    certified share falls with eps, and a Flatten network is the same as none."""
    x, y = digits
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    with torch.no_grad():
        embedding = net(x).numpy()
    km = KMeans(12, random_state=0).fit(embedding)
    mapping = majority_vote_mapping(km.labels_, y, 12)
    own = torch.from_numpy(mapping[km.labels_])
    shares, broken_any = [], torch.zeros(len(x), dtype=torch.bool)
    for eps in (0.002, 0.005, 0.01):
        certified = kmeans_is_certified(km, x, eps, mapping=mapping, features=net)
        shares.append(float(certified.float().mean()))
        for seed in range(3):
            pgd = KMeansPGD(km, mapping, eps=eps, max_iter=60, random_start=True,
                            random_state=seed, features=net)  # fmt: skip
            broken = pgd(x, own).success
            assert not bool((broken & certified).any()), (eps, seed)
            broken_any |= broken
    assert shares[0] > 0.3 and shares[0] >= shares[1] >= shares[2] > 0
    assert broken_any.float().mean() > 0.1  # the attack bites: the check can fail
    flat_km = KMeans(12, random_state=0).fit(x.flatten(1).numpy())
    np.testing.assert_array_equal(
        kmeans_is_certified(flat_km, x, 0.05, features=nn.Flatten()).numpy(),
        kmeans_is_certified(flat_km, x, 0.05).numpy(),
    )


def test_bad_input_is_named(digits):
    x, _ = digits
    km = KMeans(5, random_state=0).fit(x.flatten(1).numpy())
    with pytest.raises(ValueError, match="eps"):
        kmeans_is_certified(km, x, -0.1)
    with pytest.raises(ValueError, match="mapping must have shape \\(5,\\)"):
        kmeans_is_certified(km, x, 0.1, mapping=np.zeros(3, int))
    with pytest.raises(ValueError, match="bounds"):
        kmeans_is_certified(km, x * 2, 0.1)


class _Opaque(nn.Module):
    """The user's own module around a network: its torch.fx graph ends in the Linear layer."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_the_last_linear_layer_is_folded_into_the_half_spaces(digits):
    """Through a network ending in a Linear layer (a Sequential, or the user's module whose
    graph ends in one), eq. V is bounded over the box of that layer's inputs (the layer folded
    into k-means' affine map) rather than over the box of the features (as behind a final
    no-op Dropout, which stops the folding): every input certified the other way is
    certified, many more are (at eps 0.01 fewer than a third as many without folding), and
    none that the exact programs break."""
    from advlab.defenses import ROBUST, verify_kmeans_linf

    x, y = digits
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    with torch.no_grad():
        km = KMeans(12, random_state=0).fit(net(x).numpy())
    mapping = majority_vote_mapping(km.labels_, y, 12)
    for eps in (0.005, 0.01):
        folded = kmeans_is_certified(km, x, eps, mapping=mapping, features=net).numpy()
        traced = kmeans_is_certified(km, x, eps, mapping=mapping, features=_Opaque(net)).numpy()
        stopped = nn.Sequential(net, nn.Dropout(0.0)).eval()
        boxed = kmeans_is_certified(km, x, eps, mapping=mapping, features=stopped).numpy()
        np.testing.assert_array_equal(traced, folded)
        in_batches = kmeans_is_certified(km, x, eps, mapping=mapping, features=net, batch_size=7)
        np.testing.assert_array_equal(in_batches.numpy(), folded)
        assert np.all(folded[boxed]) and folded.sum() > 1.5 * boxed.sum()
    assert 3 * boxed.sum() < folded.sum()
    robust = verify_kmeans_linf(km, x[folded], 0.01, mapping, features=net).status == ROBUST
    assert robust.all()
