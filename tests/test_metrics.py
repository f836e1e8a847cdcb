"""Logits to numbers: accuracy, confusion, per-class accuracy, mistakes."""
import torch
import torch.nn.functional as F

from cifarkit.metrics import confusion_matrix, loss_and_correct, mistakes, per_class_accuracy


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
