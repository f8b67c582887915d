"""Train/test splits of examples by user: random 9:1, and out-of-distribution.

Both splits assign whole users, so no user has examples on both sides.

**Random** (:func:`split_random`): the distinct users are shuffled with
``random.Random(seed)`` and the first ``round(ratio * n_users)`` go to train
(clipped to ``[1, n_users - 1]`` when there are at least two users, so neither
side is empty).

**OOD** (:func:`split_ood`): each user is one row of five categorical
features, their Big Five levels (openness, conscientiousness, extraversion,
agreeableness, neuroticism: low/medium/high). ``kmodes.KModes`` clusters the
rows into ``k`` clusters; its modes (one level per trait) are the cluster
profiles. Every user is then assigned to the *nearest* mode by Hamming distance
(number of traits that differ), ties going to the profile that sorts first
(so the assignment does not depend on how clusters are numbered). Clusters are
then numbered by size, largest first (ties by profile), by renaming the
labels, never by assigning users again, so cluster 0 is always the largest.
The users of the held-out cluster (a number, or ``"smallest"``/``"largest"``)
form the test set.

**Which cluster is held out decides the test set's size and what it tests.**
The paper holds out "one cluster" and does not say which. The default, cluster
0, is the largest: a test set of often a third of the users at k = 4 (6 of 18
users on one measured build), so training sees fewer users and the test covers
the most common personality profile. ``"smallest"`` tests on the rarest profile
with the most training data, but on few users (wide intervals). The manifest
records the held-out cluster, its profile and its share of users, and
``attune split`` prints them.

Guarantee (tested): every test user is at least as close to the held-out
profile as to any other profile, and a test user whose five levels equal a
profile's equals the held-out one; cluster sizes never increase with the
cluster number.

Examples whose ``user_id`` is missing count as their own user (keyed by
``example_id``); for OOD every user needs a persona with Big Five levels.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attunement.jsonl import write_jsonl, write_manifest
from attunement.records import BIG_FIVE_TRAITS, Example

LEVELS = ("low", "medium", "high")


@dataclass
class Cluster:
    """One k-modes cluster of users: its profile (the mode) and size."""

    index: int
    profile: tuple[str, ...]
    users: int
    examples: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "users": self.users,
            "examples": self.examples,
            "profile": dict(zip(BIG_FIVE_TRAITS, self.profile, strict=True)),
        }


@dataclass
class SplitResult:
    train: list[Example]
    test: list[Example]
    mode: str
    seed: int
    clusters: list[Cluster] = field(default_factory=list)
    holdout_cluster: int | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


def user_key(example: Example) -> str:
    return example.user_id if example.user_id is not None else f"example:{example.example_id}"


def _users_in_order(examples: Sequence[Example]) -> list[str]:
    seen: dict[str, None] = {}
    for e in examples:
        seen.setdefault(user_key(e), None)
    return list(seen)


def _partition(
    examples: Sequence[Example], test_users: set[str]
) -> tuple[list[Example], list[Example]]:
    train = [e for e in examples if user_key(e) not in test_users]
    test = [e for e in examples if user_key(e) in test_users]
    return train, test


def split_random(examples: Sequence[Example], ratio: float = 0.9, seed: int = 0) -> SplitResult:
    """Split by user at random: about ``ratio`` of the users go to train."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be strictly between 0 and 1, got {ratio}")
    users = sorted(_users_in_order(examples))
    if not users:
        raise ValueError("no examples to split")
    random.Random(seed).shuffle(users)
    n_train = round(ratio * len(users))
    if len(users) >= 2:
        n_train = min(max(n_train, 1), len(users) - 1)
    test_users = set(users[n_train:])
    train, test = _partition(examples, test_users)
    manifest = {
        "mode": "random",
        "seed": seed,
        "ratio": ratio,
        "train_users": n_train,
        "test_users": len(test_users),
        "train_examples": len(train),
        "test_examples": len(test),
    }
    return SplitResult(train=train, test=test, mode="random", seed=seed, manifest=manifest)


def big_five_rows(examples: Sequence[Example]) -> dict[str, tuple[str, ...]]:
    """One Big Five level tuple per user (raises if a user has none or two different)."""
    rows: dict[str, tuple[str, ...]] = {}
    for e in examples:
        key = user_key(e)
        if e.persona is None or e.persona.big_five is None:
            raise ValueError(
                f"example {e.example_id!r} (user {key!r}) has no Big Five levels; "
                "the OOD split needs them for every user"
            )
        levels = e.persona.big_five.levels()
        if key in rows and rows[key] != levels:
            raise ValueError(f"user {key!r} has different Big Five levels in different examples")
        rows[key] = levels
    return rows


def hamming(a: Sequence[str], b: Sequence[str]) -> int:
    return sum(x != y for x, y in zip(a, b, strict=True))


def nearest_cluster(levels: Sequence[str], profiles: Sequence[Sequence[str]]) -> int:
    """Index of the closest profile (fewest differing traits; ties: the profile that
    sorts first, then the lowest index)."""
    return min(
        range(len(profiles)), key=lambda i: (hamming(levels, profiles[i]), tuple(profiles[i]), i)
    )


Holdout = int | str


def _holdout_index(holdout: Holdout, clusters: list[Cluster]) -> int:
    if holdout == "largest":
        return 0
    if holdout == "smallest":
        return min(range(len(clusters)), key=lambda i: (clusters[i].users, -i))
    if isinstance(holdout, str):
        if not holdout.isdigit():
            raise ValueError(
                f"holdout must be a cluster number, 'smallest' or 'largest', not {holdout!r}"
            )
        holdout = int(holdout)
    if not 0 <= holdout < len(clusters):
        raise ValueError(f"holdout cluster must be in 0..{len(clusters) - 1}, got {holdout}")
    return holdout


def split_ood(
    examples: Sequence[Example],
    k: int = 4,
    holdout_cluster: Holdout = 0,
    seed: int = 0,
    *,
    n_init: int = 10,
) -> SplitResult:
    """Cluster users on their Big Five levels with k-modes; hold one cluster out.

    ``holdout_cluster`` is a cluster number (0 = the largest) or ``"smallest"``
    / ``"largest"``.
    """
    kmodes = _kmodes_class()
    rows = big_five_rows(examples)
    users = sorted(rows)
    distinct = sorted(set(rows.values()))
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    if k > len(distinct):
        raise ValueError(
            f"k={k} clusters but only {len(distinct)} distinct Big Five profiles "
            f"among {len(users)} users; choose k <= {len(distinct)}"
        )
    if isinstance(holdout_cluster, int) and not 0 <= holdout_cluster < k:
        raise ValueError(f"holdout cluster must be in 0..{k - 1}, got {holdout_cluster}")

    modes = _cluster_modes(kmodes, [rows[u] for u in users], k, n_init=n_init, seed=seed)
    labels, clusters = _clusters_by_size(examples, rows, modes)
    holdout_cluster = _holdout_index(holdout_cluster, clusters)
    test_users = {u for u in users if labels[u] == holdout_cluster}
    train, test = _partition(examples, test_users)
    manifest = {
        "mode": "ood",
        "seed": seed,
        "k": k,
        "n_init": n_init,
        "init": "Huang",
        "holdout_cluster": holdout_cluster,
        "holdout_share": round(len(test_users) / len(users), 4),
        "holdout_profile": dict(
            zip(BIG_FIVE_TRAITS, clusters[holdout_cluster].profile, strict=True)
        ),
        "clusters": [c.as_dict() for c in clusters],
        "assignment": "nearest profile by Hamming distance, ties to the profile that sorts "
        "first; clusters numbered by size, largest first",
        "train_users": len(users) - len(test_users),
        "test_users": len(test_users),
        "train_examples": len(train),
        "test_examples": len(test),
    }
    return SplitResult(
        train=train,
        test=test,
        mode="ood",
        seed=seed,
        clusters=clusters,
        holdout_cluster=holdout_cluster,
        manifest=manifest,
    )


def _kmodes_class() -> Any:
    try:
        from kmodes.kmodes import KModes
    except ImportError as exc:
        raise ValueError(
            "the OOD split needs the kmodes package: pip install 'attunement[build]'"
        ) from exc
    return KModes


def _cluster_modes(
    kmodes: Any, matrix: list[tuple[str, ...]], k: int, *, n_init: int, seed: int
) -> list[tuple[str, ...]]:
    """The ``k`` cluster profiles k-modes (Huang init) finds; duplicates are an error."""
    import numpy as np

    km = kmodes(n_clusters=k, init="Huang", n_init=n_init, random_state=seed)
    km.fit(np.array(matrix, dtype=object))
    modes = [tuple(str(x) for x in row) for row in km.cluster_centroids_]
    if len(set(modes)) < len(modes):
        raise ValueError(
            f"k-modes found duplicate cluster profiles with k={k}; try a smaller k or another seed"
        )
    return modes


def _clusters_by_size(
    examples: Sequence[Example], rows: dict[str, tuple[str, ...]], modes: list[tuple[str, ...]]
) -> tuple[dict[str, int], list[Cluster]]:
    """Each user's cluster (nearest profile) and the clusters, numbered largest first."""
    users = sorted(rows)
    k = len(modes)
    labels = {u: nearest_cluster(rows[u], modes) for u in users}
    sizes = [sum(1 for u in users if labels[u] == i) for i in range(k)]
    # renumber: largest cluster first, ties by profile; rename the labels (assigning
    # again against the renumbered profiles could move tied users and break the order)
    order = sorted(range(k), key=lambda i: (-sizes[i], modes[i]))
    new_index = {old: new for new, old in enumerate(order)}
    labels = {u: new_index[labels[u]] for u in users}
    clusters = [
        Cluster(index=i, profile=modes[old], users=sum(1 for u in users if labels[u] == i))
        for i, old in enumerate(order)
    ]
    for e in examples:
        clusters[labels[user_key(e)]].examples += 1
    if any(c.users == 0 for c in clusters):
        empty = [c.index for c in clusters if c.users == 0]
        raise ValueError(
            f"clusters {empty} have no user nearest to their profile with k={k}; try a smaller k"
        )
    return labels, clusters


def write_split(
    result: SplitResult, out_dir: Path, *, source: str | Path | None = None
) -> dict[str, Path]:
    """Write ``train.jsonl``, ``test.jsonl`` and ``manifest.json`` to ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {
        "train": out_dir / "train.jsonl",
        "test": out_dir / "test.jsonl",
        "manifest": out_dir / "manifest.json",
    }
    write_jsonl(paths["train"], result.train)
    write_jsonl(paths["test"], result.test)
    write_manifest(
        paths["manifest"],
        kind="attunement.split",
        source=str(source) if source else None,
        **json.loads(json.dumps(result.manifest)),
    )
    return paths
