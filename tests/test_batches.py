"""The batch stream: batches are pure functions of (seed, epoch, step); the range test has its own draws."""

import torch

from cifarkit import TrainConfig
from cifarkit.data.batches import BatchStream
from cifarkit.data.cifar import load_cifar10


def stream(data_dir, purpose="train", **overrides):
    config = TrainConfig(**{"model": "s10-small", "batch_size": 64, "data_dir": str(data_dir), **overrides})
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


def test_pruned_epochs_leave_out_only_easy_images_keep_their_steps_and_upweight_the_easy_ones_kept(tiny_py):
    from cifarkit.data.batches import Pruning, easy_images

    s = stream(tiny_py, prune_easy=0.5, epochs=4)
    losses = torch.linspace(0.1, 2.0, 200)[torch.randperm(200, generator=torch.Generator().manual_seed(0))]
    easy = easy_images(losses)
    assert easy.sum() == 100  # below the mean of an even spread: half of them
    assert [s.prunes(e) for e in range(4)] == [False, True, True, False]  # never the first or the last epoch
    assert torch.equal(s.order(0, losses), s.order(0)) and torch.equal(s.order(3, losses), s.order(3))
    order = s.order(1, losses)
    left_out = torch.ones(200, dtype=torch.bool)
    left_out[order] = False
    assert len(set(order.tolist())) == len(order) and not left_out[~easy].any()  # every hard image stays
    assert 25 < left_out.sum() < 75  # about half of the 100 easy ones go
    assert torch.equal(order, s.order(1, losses)) and not torch.equal(order, s.order(2, losses))  # (seed, epoch)
    # the epoch keeps its 4 steps with smaller, balanced batches, and every kept image is trained once
    batches = [s.indices(order, step) for step in range(s.steps_per_epoch)]
    assert torch.equal(torch.cat(batches), order)
    assert max(map(len, batches)) - min(map(len, batches)) <= 1 and max(map(len, batches)) < 64
    x, y = s.batch(order, 1, 0)
    assert len(x) == len(batches[0]) and torch.equal(y, s.data.train_labels[batches[0]])
    pruning = Pruning(s)
    pruning.losses.copy_(losses)
    order = pruning.order(1, step_in_epoch=0)
    # 1 / (1 - 0.5) for the easy images, scaled so that the batch's mean is its sum over a full batch (50)
    weights = pruning.weights(order, 1, 0)
    assert torch.allclose(weights, torch.where(easy[batches[0]], 2.0, 1.0) * len(batches[0]) / 50)
    assert pruning.weights(pruning.order(3, 0), 3, 0) is None


def test_a_pruned_epoch_that_would_leave_fewer_images_than_steps_keeps_them_all(tiny_py):
    s = stream(tiny_py, prune_easy=0.99, epochs=3, batch_size=2)  # 100 steps an epoch
    losses = torch.cat([torch.zeros(190), torch.ones(10)])  # 190 easy images, nearly all left out
    assert torch.equal(s.order(1, losses), s.order(1))


def test_small_crop_epochs_train_on_a_window_of_the_same_augmented_images(tiny_py):
    small, full = stream(tiny_py, small_crop=20, small_crop_epochs=2, epochs=3), stream(tiny_py, epochs=3)
    for epoch in range(3):
        (xs, ys), (xf, yf) = small.batch(small.order(epoch), epoch, 1), full.batch(full.order(epoch), epoch, 1)
        assert torch.equal(ys, yf)
        if epoch == 2:  # the last epochs train at full size
            assert torch.equal(xs, xf)
            continue
        assert xs.shape[2:] == (20, 20)
        # each small image is some 20x20 window of its full-size twin (the window is drawn after the rest)
        windows = xf.unfold(2, 20, 1).unfold(3, 20, 1)  # N,C,13,13,20,20
        offsets = set()
        for i in range(len(ys)):
            match = (windows[i] == xs[i][:, None, None]).flatten(3).all(3).all(0).nonzero()
            assert len(match) >= 1
            offsets.add(tuple(match[0].tolist()))
        assert len(offsets) > 1  # drawn per image
    sweep = stream(tiny_py, purpose="lr-find", small_crop=20, small_crop_epochs=2, epochs=3)
    assert sweep.batch(sweep.order(0), 0, 0)[0].shape[2:] == (32, 32)  # the range test sweeps at full size
