"""Finding the issues: cleanlab within a split (label issues by confident learning; near duplicates, outliers, class
imbalance by Datalab), and, between the training and test splits, duplicates: identical pixels (by hash) and
appearance features closer than the near-duplicate rule allows.

Every finding is a row (a dict) of what audit.csv writes: the image (split and name), the issue, its score (0 to
1, lower = more certain: cleanlab's quality score; for a train/test pair the cosine distance of the appearance
features), the given and suggested label, the model's probability of the suggested label, and the other image of
a pair.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np

# The issue types asked of Datalab, in the order audit.csv and the page show them.
DATALAB_ISSUES = ("label", "near_duplicate", "outlier", "class_imbalance")
TRAIN_TEST = "train_test_duplicate"
ISSUES = (*DATALAB_ISSUES, TRAIN_TEST)
# Near duplicates: closer than this fraction of the median nearest-neighbour distance, within a split (Datalab's
# rule, whose default is 0.13) and between the splits, so both kinds of duplicate mean the same. Chosen on half of
# a published list of CIFAR-10's train/test duplicates (the highest recall where at least 80 % of the flagged are
# judged the same photograph), checked on the other half: docs/experiments.md#audit.
NEAR_DUPLICATE_THRESHOLD = 0.17
# How confident learning flags a label (cleanlab.filter.find_label_issues' filter_by): as many images as its
# confident joint estimates are mislabelled, those whose given label the model believes least. Chosen among
# cleanlab's rules by F1 on a label-noise sitting of 10,000 images, and checked on one of 50,000, where cleanlab's
# default (prune_by_noise_rate) flagged a quarter more images than were flipped: docs/experiments.md#audit.
LABEL_RULE = "low_self_confidence"


def datalab_rows(
    split: str,
    names: list[str],
    labels: np.ndarray,
    probs: np.ndarray,
    embeddings: np.ndarray,
    appearance: np.ndarray,
    classes: tuple[str, ...],
) -> tuple[list[dict], dict]:
    """(rows, summary) of cleanlab's issues in one split: `probs` out of sample; outliers among the `embeddings`,
    near duplicates by `appearance` (audit/predict.py says why). The summary holds the overall score of each issue
    type (Datalab's get_issue_summary; label: the mean label quality)."""
    from cleanlab import Datalab
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    # Label issues by confident learning called directly (cleanlab.filter, its calibrated confident joint).
    # Datalab's label check goes through CleanLearning, which prunes by the joint of its noise-matrix estimate
    # (estimate_py_and_noise_matrices_from_probabilities): on splits of tens of images a class it flagged only half
    # of the labels planted wrong in a well-separated set, where the direct call flagged all. Datalab does the rest:
    # one Datalab a kind of features, as it keeps the neighbour graph of the first features it is given.
    is_label_issue = find_label_issues(labels, probs, filter_by=LABEL_RULE)
    label_scores = get_label_quality_scores(labels, probs)
    by_embedding = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    by_appearance = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab's notes on its own defaults are not the user's business
        by_embedding.find_issues(
            pred_probs=probs, features=embeddings, issue_types={"outlier": {}, "class_imbalance": {}}
        )
        by_appearance.find_issues(
            features=appearance, issue_types={"near_duplicate": {"threshold": NEAR_DUPLICATE_THRESHOLD}}
        )
    rows = []
    suggested = probs.argmax(1)
    for issue in DATALAB_ISSUES:
        lab = by_appearance if issue == "near_duplicate" else by_embedding
        table = lab.get_issues(issue) if issue != "label" else None
        flagged = np.flatnonzero(is_label_issue if table is None else table[f"is_{issue}_issue"].to_numpy())
        scores = label_scores if table is None else table[f"{issue}_score"].to_numpy()
        sets = table["near_duplicate_sets"].to_numpy() if issue == "near_duplicate" else None
        for i in flagged[np.argsort(scores[flagged], kind="stable")]:
            other = int(sets[i][0]) if sets is not None and len(sets[i]) else None
            rows.append(
                _row(
                    split,
                    names[i],
                    issue,
                    float(scores[i]),
                    classes[labels[i]],
                    classes[suggested[i]],
                    float(probs[i, suggested[i]]),
                    split if other is not None else "",
                    names[other] if other is not None else "",
                )
            )
    summary = {"label": round(float(label_scores.mean()), 4)}
    for lab in (by_embedding, by_appearance):
        summary.update({row.issue_type: round(float(row.score), 4) for row in lab.get_issue_summary().itertuples()})
    return rows, summary


def pixel_hashes(images) -> list[bytes]:
    """One digest of each uint8 image's pixels (a torch tensor, N x 3 x H x W)."""
    array = images.cpu().contiguous().numpy()
    return [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in array]


def exact_pairs(train_images, test_images) -> list[tuple[int, int]]:
    """(test position, train position) of every test image whose pixels equal a training image's (the first such
    training image)."""
    first: dict[bytes, int] = {}
    for j, digest in enumerate(pixel_hashes(train_images)):
        first.setdefault(digest, j)
    return [(i, first[digest]) for i, digest in enumerate(pixel_hashes(test_images)) if digest in first]


def nearest_across(
    test_features: np.ndarray, train_features: np.ndarray, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest training image, cosine distance to it) for each test image's features."""

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    test, train = unit(test_features.astype(np.float32)), unit(train_features.astype(np.float32))
    nearest = np.empty(len(test), dtype=np.int64)
    distance = np.empty(len(test), dtype=np.float32)
    for start in range(0, len(test), chunk):
        similarity = test[start : start + chunk] @ train.T
        nearest[start : start + chunk] = similarity.argmax(1)
        distance[start : start + chunk] = 1 - similarity.max(1)
    return nearest, np.clip(distance, 0, 2)


def train_test_rows(
    train_names: list[str],
    test_names: list[str],
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    train_images,
    test_images,
    train_appearance: np.ndarray,
    test_appearance: np.ndarray,
    classes: tuple[str, ...],
) -> tuple[list[dict], dict]:
    """(rows, summary) of the test images that duplicate a training image: identical pixels, or appearance
    features nearer the nearest training image's than NEAR_DUPLICATE_THRESHOLD x the median of those distances.
    Two rows a pair (the test image, then the training image), the nearest pairs first."""
    exact = dict(exact_pairs(train_images, test_images))
    nearest, distance = nearest_across(test_appearance, train_appearance)
    median = float(np.median(distance)) if len(distance) else 0.0
    close = distance < NEAR_DUPLICATE_THRESHOLD * median
    pairs = {i: (int(nearest[i]), float(distance[i])) for i in np.flatnonzero(close)}
    pairs.update({i: (j, 0.0) for i, j in exact.items()})  # identical pixels: the pair is the identical image
    rows = []
    for i, (j, d) in sorted(pairs.items(), key=lambda item: (item[1][1], item[0])):
        given_test, given_train = classes[test_labels[i]], classes[train_labels[j]]
        rows.append(_row("test", test_names[i], TRAIN_TEST, d, given_test, given_train, None, "train", train_names[j]))
        rows.append(_row("train", train_names[j], TRAIN_TEST, d, given_train, given_test, None, "test", test_names[i]))
    summary = {
        "exact": len(exact),
        "near": len(pairs) - len(exact),
        "median_distance": round(median, 6),
        "threshold_distance": round(NEAR_DUPLICATE_THRESHOLD * median, 6),
    }
    return rows, summary


def _row(
    split: str,
    image: str,
    issue: str,
    score: float,
    given: str,
    suggested: str,
    confidence: float | None,
    duplicate_split: str,
    duplicate_image: str,
) -> dict:
    return {
        "split": split,
        "image": image,
        "issue": issue,
        "score": round(score, 6),
        "given_label": given,
        "suggested_label": suggested,
        "confidence": "" if confidence is None else round(confidence, 4),
        "duplicate_split": duplicate_split,
        "duplicate_image": duplicate_image,
    }


def shown_rows(rows: list[dict], issue: str) -> list[dict]:
    """The rows of `issue` a person looks at, in the rows' order: a train/test duplicate from its test image's side
    (it is listed from both), a near-duplicate pair within a split once (cleanlab lists it from both images)."""
    seen, shown = set(), []
    for row in rows:
        if row["issue"] != issue or (issue == TRAIN_TEST and row["split"] != "test"):
            continue
        if issue == "near_duplicate":
            pair = frozenset({(row["split"], row["image"]), (row["duplicate_split"], row["duplicate_image"])})
            if pair in seen:
                continue
            seen.add(pair)
        shown.append(row)
    return shown
