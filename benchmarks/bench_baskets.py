"""Basket completion: hide one item of a basket, rank it back from the rest.

Data (``../shared/data``, see its README): FIMI retail (88,162 Belgian supermarket baskets),
Groceries (9,835 baskets, 169 categories), and the orders of Online Retail and Ta-Feng (as
training builds them; not with ``--smoke``). Protocol: a seeded 80/20 split of baskets;
bought-together co-occurrence (:func:`recsys.models.cooccurrence.cooccurrence_matrix` with
each normalisation, the asymmetric cosine at :data:`ASYMMETRIC_ALPHAS`, ``min_support=2`` and
50 neighbours per item, as :class:`~recsys.models.cooccurrence.CooccurrenceModel` fits) on the
training baskets; for each test basket with at least 2 distinct items one item, drawn at
random, is hidden, the others score every item (sum of their neighbour rows), the basket's own
items are excluded, and ties -- items no neighbour row reaches included -- are broken by
popularity (training baskets holding the item). The popularity baseline ranks by that count
alone. Hit rate@10 and MRR@10 over the test baskets. "chosen" is the normalisation that
"bought together" with ``choose = true`` serves
(:func:`recsys.models.cooccurrence.choose_normalisation` on the training baskets only, from
the default config's normalisation).

Run: ``.venv/bin/python -m benchmarks.bench_baskets [--smoke]``
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from benchmarks.common import (
    SHARED_DATA,
    base_parser,
    markdown_table,
    out_dir,
    pyplot,
    save_plot,
    timed,
    write_report,
)

K = 10
CHUNK = 1024
#: Shops' event files (``../shared/data``) whose orders are baskets too: label -> (file, format).
SHOP_ORDERS = {
    "Online Retail orders": ("online_retail.csv.gz", "online-retail"),
    "Ta-Feng orders": ("ta_feng_events.csv.gz", "generic"),
}
#: The asymmetric cosine's exponents tried (0.65: "bought together", 0.85: "often viewed with").
ASYMMETRIC_ALPHAS = (0.65, 0.75, 0.85, 0.95)


def read_baskets(path: Path, limit: int | None = None) -> sp.csr_matrix:
    """Baskets as a binary ``baskets × items`` CSR (``.dat[.gz]``: spaces, ``.csv``: commas)."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    sep = "," if ".csv" in path.name else None
    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    n = 0
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            # sorted: a set's order follows the string hash, which changes per process, and
            # the item numbering picks each test basket's hidden item
            items = sorted({t.strip() for t in line.split(sep) if t.strip()})
            if not items:
                continue
            for item in items:
                rows.append(n)
                cols.append(vocab.setdefault(item, len(vocab)))
            n += 1
            if limit is not None and n >= limit:
                break
    return sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, len(vocab))
    )


def shop_orders(path: Path, format: str) -> sp.csr_matrix:
    """A shop's orders (``TrainingData.orders``: what "bought together" learns from) as
    binary ``orders × items``, through the product's ingest and training data."""
    from benchmarks.bench_rolling import load_events
    from recsys.data.interactions import InteractionConfig, build_training_data

    events, catalog = load_events(path, format)
    orders = sp.csr_matrix(build_training_data(events, InteractionConfig(), catalog=catalog).orders)
    orders = orders[np.diff(orders.indptr) > 0]
    orders.data[:] = 1.0
    return orders


def hidden_rank(
    rest: sp.csr_matrix,
    hidden: NDArray[np.intp],
    similarity: sp.csr_matrix | None,
    popularity: NDArray[np.float64],
) -> NDArray[np.int64]:
    """1-based rank of each hidden item (score desc, then popularity desc; rest excluded)."""
    ranks = np.empty(len(hidden), dtype=np.int64)
    for start in range(0, len(hidden), CHUNK):
        block = rest[start : start + CHUNK]
        h = hidden[start : start + CHUNK]
        rows = np.arange(len(h))
        if similarity is None:
            scores = np.zeros(block.shape, dtype=np.float64)
        else:
            scores = np.asarray((block @ similarity).todense(), dtype=np.float64)
        scores[block.nonzero()] = -np.inf  # the basket's own items are not candidates
        mine = scores[rows, h][:, None]
        mine_pop = popularity[h][:, None]
        above = (scores > mine) | ((scores == mine) & (popularity[None, :] > mine_pop))
        ranks[start : start + CHUNK] = 1 + above.sum(axis=1)
    return ranks


def evaluate(baskets: sp.csr_matrix, seed: int) -> list[dict[str, Any]]:
    """Hit rate@10 and MRR@10 of popularity and of co-occurrence with each normalisation."""
    from recsys.models.cooccurrence import (
        NORMALISATIONS,
        choose_normalisation,
        cooccurrence_matrix,
        keep_top_neighbours,
        normalisation_label,
    )
    from training.config import load_training_config

    rng = np.random.default_rng(seed)
    test_mask = rng.random(baskets.shape[0]) < 0.2
    train, test = baskets[~test_mask], baskets[test_mask]
    test = test[np.diff(test.indptr) >= 2]
    hidden = np.empty(test.shape[0], dtype=np.intp)
    rest = test.tolil()
    for r in range(test.shape[0]):
        items = test.indices[test.indptr[r] : test.indptr[r + 1]]
        hidden[r] = items[rng.integers(len(items))]
        rest[r, hidden[r]] = 0
    rest_csr = sp.csr_matrix(rest)
    rest_csr.eliminate_zeros()
    popularity = np.diff(sp.csc_matrix(train).indptr).astype(np.float64)

    results = []
    contenders: list[tuple[str, str | None, float]] = [("popularity", None, 0.5)]
    for n in NORMALISATIONS:
        if n == "asymmetric":  # between conditional (alpha 1) and cosine (0.5)
            contenders += [(f"co-occurrence, {n} {a}", n, a) for a in ASYMMETRIC_ALPHAS]
        else:
            contenders.append((f"co-occurrence, {n}", n, 0.5))
    # what "bought together" with choose = true serves: its test sees the training baskets only
    params = load_training_config().models["bought_together"].params
    choice = choose_normalisation(
        train,
        normalisation=params["normalisation"],
        alpha=params["alpha"],
        min_support=2,
        neighbours=50,
        seed=seed,
    )
    label = normalisation_label(choice.normalisation, choice.alpha)
    contenders.append((f"co-occurrence, chosen ({label})", choice.normalisation, choice.alpha))
    for name, norm, alpha in contenders:
        sim = None
        fit_s = 0.0
        if norm is not None:
            fit_s, full = timed(
                lambda n=norm, a=alpha: cooccurrence_matrix(train, n, min_support=2, alpha=a)
            )
            extra, sim = timed(lambda f=full: keep_top_neighbours(f, 50))
            fit_s += extra
        score_s, ranks = timed(lambda s=sim: hidden_rank(rest_csr, hidden, s, popularity))
        hit = ranks <= K
        results.append(
            {
                "model": name,
                "hit_rate": float(hit.mean()),
                "mrr": float(np.where(hit, 1.0 / ranks, 0.0).mean()),
                "fit_s": fit_s,
                "score_s": score_s,
                "train_baskets": int(train.shape[0]),
                "test_baskets": int(test.shape[0]),
                "items": int(baskets.shape[1]),
            }
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run on both data sets; write ``baskets.md``/``.json``/``.png``."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = out_dir(args)
    sets = {
        "FIMI retail": SHARED_DATA / "fimi_retail_baskets.dat.gz",
        "Groceries": SHARED_DATA / "groceries_baskets.csv",
    }
    if not args.smoke:  # the two shops' own orders (a minute to ingest)
        sets |= {label: SHARED_DATA / name for label, (name, _) in SHOP_ORDERS.items()}
    limit = 2000 if args.smoke else None
    md: list[str] = []
    data: dict[str, Any] = {}
    for label, path in sets.items():
        if not path.exists():
            md.append(f"{label}: skipped, {path} is absent.\n")
            continue
        if label in SHOP_ORDERS:
            baskets = shop_orders(path, SHOP_ORDERS[label][1])
        else:
            baskets = read_baskets(path, limit)
        rows = evaluate(baskets, args.seed)
        data[label] = rows
        first = rows[0]
        md += [
            f"**{label}** ({path.name}{', first 2,000 baskets' if limit else ''}): "
            f"{baskets.shape[0]:,} baskets, {first['items']:,} items; "
            f"{first['train_baskets']:,} train, {first['test_baskets']:,} test baskets "
            f"with >= 2 items; seed {args.seed}.",
            "",
            markdown_table(
                ["model", "hit rate@10", "MRR@10", "fit s", "score s"],
                [[r["model"], r["hit_rate"], r["mrr"], r["fit_s"], r["score_s"]] for r in rows],
            ),
            "",
        ]
    if data:
        plt = pyplot()
        fig, axes = plt.subplots(1, len(data), figsize=(5 * len(data), 4), squeeze=False)
        for ax, (label, rows) in zip(axes[0], data.items(), strict=True):
            names = [r["model"].replace("co-occurrence, ", "") for r in rows]
            x = np.arange(len(rows))
            ax.bar(x - 0.2, [r["hit_rate"] for r in rows], 0.4, label="hit rate@10")
            ax.bar(x + 0.2, [r["mrr"] for r in rows], 0.4, label="MRR@10")
            ax.set_xticks(x, names, rotation=30, ha="right")
            ax.set_title(label)
            ax.legend(fontsize=8)
        save_plot(fig, out, "baskets")
    write_report(out, "baskets", "\n".join(md), data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
