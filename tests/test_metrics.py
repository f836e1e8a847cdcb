"""Logits to numbers: accuracy, confusion, per-class accuracy, mistakes."""

import torch
import torch.nn.functional as F

from cifarkit.evaluate.metrics import confusion_matrix, loss_and_correct, mistakes, per_class_accuracy


def test_mistakes_are_ordered_by_confidence():
    labels = torch.tensor([0, 1, 2, 0])
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    assert mistakes(labels, probs).tolist() == [2, 3, 1]


def test_confusion_counts_and_per_class_accuracy():
    counts = confusion_matrix(torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0, 1, 1, 2, 0]), 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert per_class_accuracy(counts).tolist() == [0.5, 1.0, 0.5]


def test_loss_and_correct_sums_over_the_images():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 0])
    loss, correct = loss_and_correct(logits, labels).tolist()
    assert correct == 2 and abs(loss - 3 * F.cross_entropy(logits, labels).item()) < 1e-5


def test_selective_tta_adds_the_views_only_where_the_plain_prediction_is_unsure():
    from torch import nn

    from cifarkit.data.augment import normalize, tta_views
    from cifarkit.evaluate.metrics import predict_logits

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    )
    model.eval()
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    seen = []
    model.register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    plain = predict_logits(model, images, batch_size=32, channels_last=False)
    full = predict_logits(model, images, batch_size=32, channels_last=False, tta="flip-translate")
    assert sum(seen) == 64 + 6 * 64
    with torch.inference_mode():  # the mean over the six views, computed here
        views = tta_views(normalize(images), "flip-translate")
        torch.testing.assert_close(full, torch.stack([model(v) for v in views]).mean(0), rtol=1e-4, atol=1e-5)
    confidence = plain.softmax(1).amax(1)
    threshold = confidence.median().item()
    unsure = confidence < threshold
    assert 0 < unsure.sum() < 64
    seen.clear()
    selective = predict_logits(
        model, images, batch_size=32, channels_last=False, tta="flip-translate", tta_below=threshold
    )
    assert sum(seen) == 64 + 5 * int(unsure.sum())  # the plain pass, then 5 extra views of the unsure images
    assert torch.equal(selective[~unsure], plain[~unsure])
    torch.testing.assert_close(selective[unsure], full[unsure], rtol=1e-4, atol=1e-5)


def test_predict_logits_reports_each_batch_done_and_its_result_does_not_change():
    from torch import nn

    from cifarkit.evaluate.metrics import predict_logits

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    images = torch.randint(0, 256, (25, 3, 32, 32), dtype=torch.uint8)
    done = []
    logits = predict_logits(model, images, batch_size=10, tta="flip", on_batch=done.append)
    assert done == [10, 10, 5]  # a progress bar's updates, in images
    assert torch.equal(logits, predict_logits(model, images, batch_size=10, tta="flip"))
