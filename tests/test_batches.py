"""The batch stream: batches are pure functions of (seed, epoch, step); the range test has its own draws."""
import torch

from cifarkit import TrainConfig
from cifarkit.batches import BatchStream
from cifarkit.cifar import load_cifar10


def stream(data_dir, purpose="train", **overrides):
    config = TrainConfig(model="s10-small", batch_size=64, data_dir=str(data_dir), **overrides)
    return BatchStream(load_cifar10(data_dir, download=False), config, torch.device("cpu"), purpose=purpose)


def test_a_batch_is_a_pure_function_of_seed_epoch_and_step(tiny_py):
    a, b = stream(tiny_py), stream(tiny_py)
    assert a.steps_per_epoch == 4  # 200 images in batches of 64, the last one smaller
    for epoch, step in ((0, 0), (1, 3), (5, 2)):
        xa, ya = a.batch(a.order(epoch), epoch, step)
        xb, yb = b.batch(b.order(epoch), epoch, step)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a.order(0), a.order(1))
    assert not torch.equal(a.order(0), stream(tiny_py, seed=1).order(0))
    assert len(a.batch(a.order(0), 0, 3)[1]) == 200 - 3 * 64


def test_the_range_test_draws_its_own_batches_forever(tiny_py):
    train, sweep = stream(tiny_py), stream(tiny_py, purpose="lr-find", alternate_flip=True)
    assert not torch.equal(train.order(0), sweep.order(0))
    assert sweep.even_flips is None  # alternating flips belong to the training epochs
    batches = iter(sweep)
    sizes = [len(next(batches)[1]) for _ in range(9)]  # past the end of the first epochs
    assert sizes == [64, 64, 64, 8] * 2 + [64]
