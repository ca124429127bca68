from __future__ import annotations

import platform

import numpy as np
import pytest
import torch

from advlab.data import load_dataset
from advlab.experiments import Cache
from advlab.models import MODELS, accuracy, build_model, train_classifier
from advlab.models import train as train_module
from advlab.models.zoo import textbook_layout
from advlab.utils.perf import pinned_threads
from tests.conftest import needs_mnist


def test_mlp_takes_any_input_size():
    model = build_model("mlp", 10, (1, 8, 8))
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_shapes_and_features(name):
    model = build_model(name, 10, (1, 28, 28)).eval()
    x = torch.rand(3, 1, 28, 28)
    assert model(x).shape == (3, 10)
    feats = model.features(x)
    assert model.classifier(feats).shape == (3, 10)
    if name == "fc1":
        assert feats.shape == (3, 100)  # Mygdalis et al.'s 100-dimensional representation


@pytest.mark.parametrize("name", ["small_cnn", "lenet5"])
def test_pool_before_relu_and_channels_last_leave_the_function_unchanged(name):
    torch.manual_seed(0)
    model = build_model(name, 10, (1, 28, 28)).eval()
    assert model.channels_last
    assert [type(m) for m in model.body][:3] == [torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.ReLU]
    assert model.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    reference = textbook_layout(model).eval()
    layers = [type(m) for m in reference.body][:3]
    assert layers == [torch.nn.Conv2d, torch.nn.ReLU, torch.nn.MaxPool2d]
    assert reference.body[0].weight.is_contiguous()
    x = torch.rand(16, 1, 28, 28, requires_grad=True)
    y = torch.randint(0, 10, (16,))
    logits, ref_logits = model(x), reference(x)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), x)
    (ref_grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(ref_logits, y), x)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-4)
    assert grad.is_contiguous()  # attacks see the default layout
    state = model.state_dict()  # the keys of the conv-ReLU-pool order load unchanged
    assert set(state) == set(reference.state_dict())
    build_model(name, 10, (1, 28, 28)).load_state_dict(
        {k: v.contiguous() for k, v in state.items()}
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_takes_channels_sizes_classes_and_normalisation(name):
    model = build_model(name, 5, (3, 32, 32), mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3]).eval()
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 5)
    assert model.input_std == [0.2, 0.25, 0.3]
    plain = build_model(name, 5, (3, 32, 32)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "normalize" not in k},
                          strict=False)  # fmt: skip
    mean = torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1)
    torch.testing.assert_close(model(x), plain((x - mean) / std), atol=1e-5, rtol=1e-5)


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg", 10, (1, 28, 28))
    with pytest.raises(TypeError, match="input_shape"):  # (no data set assumed: no default)
        build_model("small_cnn", 10)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="mean has 2 values for input_shape \\(3, 32, 32\\)"):
        build_model("small_cnn", 10, (3, 32, 32), mean=[0.5, 0.5], std=[0.2, 0.2, 0.2])
    one_for_all = build_model("small_cnn", 10, (3, 32, 32), mean=[0.5], std=0.2)
    assert one_for_all(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.fixture(scope="module")
def small_mnist():
    if not (train := _mnist_or_none()):
        pytest.skip("needs MNIST (ADVLAB_DATA)")
    return train.subset(slice(0, 3000)), load_dataset("mnist", "test").subset(slice(0, 1000))


MNIST_STATS = {"mean": 0.1307, "std": 0.3081}  # MNIST's training-set mean and std


def _mnist_or_none():
    try:
        return load_dataset("mnist", "train")
    except FileNotFoundError:
        return None


@needs_mnist
def test_training_is_seeded_cached_and_accurate(small_mnist, tmp_path):
    train, test = small_mnist
    cache = Cache(tmp_path)
    first = train_classifier("small_cnn", train, test, epochs=2, batch_size=64, seed=3, cache=cache,
                             **MNIST_STATS)  # fmt: skip
    assert not first.from_cache and first.test_accuracy > 90.0
    assert first.model.input_std == 0.3081
    second = train_classifier(
        "small_cnn", train, test, epochs=2, batch_size=64, seed=3, cache=cache, **MNIST_STATS
    )
    assert second.from_cache and second.test_accuracy == first.test_accuracy
    for a, b in zip(
        first.model.state_dict().values(), second.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    other = train_classifier("small_cnn", train, None, epochs=1, seed=4, cache=cache)
    assert other.cache_key != first.cache_key and not other.from_cache
    assert accuracy(first.model, test) == first.test_accuracy


@needs_mnist
def test_weights_trained_at_another_thread_count_are_another_cache_entry(small_mnist, tmp_path):
    train, _ = small_mnist
    cache = Cache(tmp_path)
    trained = {}
    with pinned_threads(1):
        trained[1] = train_classifier("small_cnn", train, epochs=1, cache=cache, **MNIST_STATS)
    with pinned_threads(2):
        trained[2] = train_classifier("small_cnn", train, epochs=1, cache=cache, **MNIST_STATS)
    assert not trained[1].from_cache and not trained[2].from_cache
    assert trained[1].cache_key != trained[2].cache_key  # their weights differ on this CPU
    with pinned_threads(1):
        again = train_classifier("small_cnn", train, epochs=1, cache=cache, **MNIST_STATS)
    assert again.from_cache and again.weights_sha256 == trained[1].weights_sha256


@needs_mnist
def test_training_resumes_after_an_interrupted_epoch(small_mnist, tmp_path, monkeypatch):
    train, _ = small_mnist
    reference = train_classifier(
        "fc1", train, epochs=2, seed=0, cache=Cache(tmp_path / "ref")
    ).model
    real_save = train_module._save_checkpoint
    epochs_run = []

    def interrupt_after_first_epoch(model, optimizer, epoch, path):
        real_save(model, optimizer, epoch, path)
        epochs_run.append(epoch)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_checkpoint", interrupt_after_first_epoch)
    cache = Cache(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train_classifier("fc1", train, epochs=2, seed=0, cache=cache)
    resumed = train_classifier("fc1", train, epochs=2, seed=0, cache=cache).model
    assert epochs_run == [1, 2]  # epoch 1 was not trained again
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert not list((tmp_path / "run" / "checkpoints").glob("*.pt"))  # removed once done


def test_training_bad_input():
    digits = load_dataset("digits", "train")
    with pytest.raises(ValueError, match="at least 10 x 10, got 8 x 8"):
        train_classifier("small_cnn", digits)
    iris = load_dataset("iris", "train")
    with pytest.raises(ValueError, match="no images"):
        train_classifier("small_cnn", iris)
    with pytest.raises(ValueError, match="epochs"):
        train_classifier("small_cnn", digits, epochs=0)
    with pytest.raises(ValueError, match="schedule"):
        train_classifier("mlp", digits, schedule="step")


def test_cosine_schedule_is_part_of_the_cache_key(tmp_path):
    digits = load_dataset("digits", "train")
    cache = Cache(tmp_path)
    constant = train_classifier("mlp", digits, epochs=10, cache=cache)
    cosine = train_classifier("mlp", digits, epochs=10, cache=cache, schedule="cosine")
    assert constant.cache_key != cosine.cache_key and not cosine.from_cache
    assert accuracy(cosine.model, load_dataset("digits", "test")) > 85.0


def test_gaussian_noise_training_is_seeded_cached_and_holds_up_under_noise(tmp_path):
    """noise_sigma: another cache entry (0 keeps the noiseless key), the same weights twice,
    and on the 8x8 digits under noise of std 0.5 the noise-trained MLP is more accurate than
    the one trained without it (the base classifier randomized smoothing wants; on these
    digits by a few points only)."""
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    cache = Cache(tmp_path)
    plain = train_classifier("mlp", train, epochs=20, cache=cache)
    zero = train_classifier("mlp", train, epochs=20, cache=cache, noise_sigma=0.0)
    noisy = train_classifier("mlp", train, epochs=20, cache=cache, noise_sigma=0.5)
    again = train_classifier("mlp", train, epochs=20, cache=Cache(tmp_path / "b"), noise_sigma=0.5)
    assert zero.cache_key == plain.cache_key and zero.from_cache
    assert noisy.cache_key != plain.cache_key and not noisy.from_cache
    assert noisy.weights_sha256 == again.weights_sha256 != plain.weights_sha256
    x = torch.from_numpy(test.images)
    shaken = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    y = torch.from_numpy(test.labels)

    def noisy_accuracy(model: torch.nn.Module) -> float:
        with torch.no_grad():
            return float((model(shaken).argmax(1) == y).float().mean())

    assert noisy_accuracy(noisy.model) > noisy_accuracy(plain.model) + 0.02  # (68.3 vs 64.4 %)
    with pytest.raises(ValueError, match="noise_sigma"):
        train_classifier("mlp", train, epochs=1, cache=cache, noise_sigma=-0.1)


def test_allocator_tuning_can_be_switched_off(monkeypatch):
    from advlab.utils import perf

    monkeypatch.setenv(perf.OPT_OUT_VARIABLE, "0")
    assert perf.tune_cpu_allocator() is False
    monkeypatch.setenv(perf.OPT_OUT_VARIABLE, "1")
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert perf.tune_cpu_allocator() is True
        assert perf.allocator_tuned() is True


def test_your_own_arrays_train_a_zoo_model_and_are_cached_by_their_content(tmp_path):
    """Dataset.from_arrays: 3-channel images of your own train small_cnn; the same arrays find
    the cached weights again, one changed pixel is another artefact."""
    from advlab.data import Dataset
    from advlab.utils import Cache

    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    images = 0.3 * rng.random((60, 3, 12, 12), dtype=np.float32)
    for i, c in enumerate(y):
        images[i, c, 2:10, 2:10] += 0.6
    ds = Dataset.from_arrays(images, y, name="squares")
    assert ds.images.shape == (60, 3, 12, 12) and ds.data.shape == (60, 432)
    assert ds.n_classes == 3 and ds.labels.dtype == np.int64
    cache = Cache(tmp_path)
    first = train_classifier("small_cnn", ds, ds, epochs=3, lr=1e-2, cache=cache)
    again = train_classifier("small_cnn", Dataset.from_arrays(images.copy(), y), ds, epochs=3,
                             lr=1e-2, cache=cache)  # fmt: skip
    assert not first.from_cache and again.from_cache
    assert again.weights_sha256 == first.weights_sha256 and first.test_accuracy > 90
    changed = images.copy()
    changed[0, 0, 0, 0] += 0.01
    other = train_classifier("small_cnn", Dataset.from_arrays(changed, y), epochs=3, lr=1e-2,
                             cache=cache)  # fmt: skip
    assert not other.from_cache and other.cache_key != first.cache_key
    for X, labels, message in [
        (images * 255, y, "divide 8-bit images by 255"),
        (images, np.array(["a", "b", "c"])[y], "LabelEncoder"),
        (images[:, 0, 0], y[:5], "y must have shape \\(60,\\)"),
        (np.where(images > 0.85, np.nan, images), y, "NaN"),
    ]:
        with pytest.raises(ValueError, match=message):
            Dataset.from_arrays(X, labels)
