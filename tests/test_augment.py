import pytest
import torch
import torch.nn.functional as F

from cifarkit.data.augment import Augment, alternating_flips, cutout, normalize, random_crop, random_flip
from cifarkit.data.dataset import MEAN, STD


def batch(n=256, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_normalize_uses_the_cifar_mean_and_std():
    x = torch.full((1, 3, 32, 32), 128, dtype=torch.uint8)
    out = normalize(x)
    for c in range(3):
        assert torch.allclose(out[0, c], torch.tensor((128 / 255 - MEAN[c]) / STD[c]))


def test_every_crop_is_a_window_of_the_reflect_padded_image():
    x = normalize(batch(64))
    out = random_crop(x, 4, gen())
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    offsets = set()
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if torch.equal(out[i], padded[i, :, dy : dy + 32, dx : dx + 32])
        ]
        assert matches, f"image {i} is not a 32x32 window of its padded image"
        offsets.add(matches[0])
    assert len(offsets) > 20  # offsets are drawn per image, not once per batch


def test_flip_rate_is_one_half_and_flips_whole_images():
    x = normalize(batch(2000))
    out = random_flip(x, gen())
    flipped = torch.tensor([torch.equal(o, i.flip(2)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert bool((flipped | kept).all())
    assert 0.45 < flipped.float().mean().item() < 0.55


def test_cutout_is_one_8x8_hole_of_mean_colour_inside_the_image_half_the_time():
    x = normalize(batch(2000)) + 10.0  # no pixel is 0 before cutout
    out = cutout(x, 8, 0.5, gen())
    zero = (out == 0).all(dim=1)  # (N,H,W): all channels at the mean colour
    counts = zero.flatten(1).sum(1)
    assert set(counts.unique().tolist()) == {0, 64}
    assert 0.45 < (counts == 64).float().mean().item() < 0.55
    for i in torch.nonzero(counts == 64).flatten()[:50]:
        rows, cols = torch.nonzero(zero[i], as_tuple=True)
        assert rows.max() - rows.min() == 7 and cols.max() - cols.min() == 7  # a square, wholly inside
    assert torch.equal(out[~zero[:, None].expand_as(out)], x[~zero[:, None].expand_as(x)])


def test_augment_is_reproducible_from_the_seed_and_differs_across_seeds():
    aug, x = Augment(), batch(32)
    assert torch.equal(aug(x, gen(7)), aug(x, gen(7)))
    assert not torch.equal(aug(x, gen(7)), aug(x, gen(8)))


def test_disabled_augment_is_plain_normalisation():
    x = batch(8)
    assert torch.equal(Augment(pad_crop=0, flip=False, cutout_size=0)(x, gen()), normalize(x))


def test_alternating_flips_mirror_each_image_in_every_other_epoch():
    from cifarkit.data.batches import even_epoch_flips

    even = even_epoch_flips(1000, torch.device("cpu"), seed=3)
    assert torch.equal(even, even_epoch_flips(1000, torch.device("cpu"), seed=3))  # fixed by the seed
    assert 400 < int(even.sum()) < 600
    assert torch.equal(alternating_flips(even, 0), even) and torch.equal(alternating_flips(even, 2), even)
    assert torch.equal(alternating_flips(even, 1), ~even) and torch.equal(alternating_flips(even, 5), ~even)

    imgs = batch(8)
    aug = Augment(pad_crop=0, flip=True, cutout_size=0)
    flips = torch.tensor([True, False] * 4)
    out = aug(imgs, torch.Generator().manual_seed(0), flips)
    plain = normalize(imgs)
    assert torch.equal(out[flips], plain[flips].flip(3)) and torch.equal(out[~flips], plain[~flips])
    # consecutive epochs show each image both ways
    x0 = aug(imgs, torch.Generator().manual_seed(0), alternating_flips(flips, 0))
    x1 = aug(imgs, torch.Generator().manual_seed(1), alternating_flips(flips, 1))
    assert torch.equal(x1, x0.flip(3))


def test_color_jitter_shifts_then_scales_each_image_within_its_ranges():
    from cifarkit.data.augment import color_jitter

    x = torch.randn(400, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    out = color_jitter(x, 0.3, 0.2, torch.Generator().manual_seed(0))
    # out = (x + shift) * scale per image: recover both from each image's mean and spread
    scale = out.flatten(1).std(1) / x.flatten(1).std(1)
    shift = out.flatten(1).mean(1) / scale - x.flatten(1).mean(1)
    torch.testing.assert_close(out, (x + shift.view(-1, 1, 1, 1)) * scale.view(-1, 1, 1, 1), rtol=1e-4, atol=1e-4)
    assert scale.min() >= 0.8 - 1e-5 and scale.max() <= 1.2 + 1e-5 and scale.std() > 0.05
    assert shift.abs().max() <= 0.3 + 1e-4 and shift.std() > 0.1
    assert torch.equal(out, color_jitter(x, 0.3, 0.2, torch.Generator().manual_seed(0)))  # from the seed alone
    plain = Augment(pad_crop=0, flip=False, cutout_size=0)
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    jittered = Augment(pad_crop=0, flip=False, cutout_size=0, brightness=0.3, contrast=0.2)
    assert not torch.equal(jittered(images, torch.Generator().manual_seed(0)), plain(images, torch.Generator()))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pad_crop": -1}, "pad_crop=-1 must be a whole number of pixels >= 0"),
        ({"cutout_size": 2.5}, "cutout_size=2.5 must be a whole number"),
        ({"cutout_prob": 1.5}, r"cutout_prob=1.5 must be a probability in \[0, 1\]"),
        ({"brightness": float("nan")}, r"brightness=nan must be in \[0, 2\]"),
        ({"contrast": 1.0}, r"contrast=1.0 must be in \[0, 1\)"),
        ({"mean": (0.5, 0.5)}, "mean=.* must be 3 channel means"),
        ({"std": (0.2, 0.0, 0.2)}, "std=.* must be 3 channel standard deviations"),
        ({"mean": 0.5}, "mean=0.5 must be 3 channel means"),
    ],
)
def test_an_augment_built_by_hand_is_range_checked(kwargs, message):
    with pytest.raises(ValueError, match=f"Augment: {message}"):
        Augment(**kwargs)


@pytest.mark.parametrize("brightness, allowed", [(2.0, True), (2.5, False), (-0.1, False)])
def test_the_flag_and_an_augment_built_by_hand_take_the_same_brightness_range(brightness, allowed):
    from cifarkit.config import TrainConfig
    from cifarkit.errors import UserError

    if allowed:
        Augment(brightness=brightness)
        TrainConfig(brightness=brightness).validate()
        return
    with pytest.raises(ValueError, match=r"must be in \[0, 2\] \(standard units\)"):
        Augment(brightness=brightness)
    with pytest.raises(UserError, match=r"must be in \[0, 2\] \(standard units\)"):
        TrainConfig(brightness=brightness).validate()


def test_an_augment_larger_than_the_images_is_refused_by_name():
    small = batch(2)[:, :, :8, :8]
    with pytest.raises(ValueError, match=r"Augment: pad_crop=8 must be below the images' side \(8 px\)$"):
        Augment(pad_crop=8, cutout_size=4)(small, gen())
    with pytest.raises(ValueError, match=r"Augment: cutout_size=12 must be at most the images' side \(8 px\)$"):
        Augment(pad_crop=2, cutout_size=12)(small, gen())
    assert Augment(pad_crop=2, cutout_size=12, cutout_prob=0)(small, gen()).shape == small.shape  # no hole drawn


def test_an_augment_takes_numpy_numbers():
    import numpy as np

    stats = np.array([0.5, 0.4, 0.3], dtype=np.float32)
    Augment(pad_crop=np.int64(2), cutout_prob=np.float32(0.5), mean=tuple(stats), std=tuple(stats))
