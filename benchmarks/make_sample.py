"""Make the quickstart sample: recsys/data/sample/online_retail_sample.csv.gz.

Every row (purchases, cancellations) of a seeded random set of Online Retail customers, always
including customer 12347, plus every row of a seeded random set of guest invoices, in the
original layout and order. Usage::

    python benchmarks/make_sample.py [SOURCE] [--customers 950] [--guest-invoices 60]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "online_retail.csv.gz"
TARGET = ROOT / "recsys" / "data" / "sample" / "online_retail_sample.csv.gz"
SEED = 352  # the UCI data set number


def make_sample(source: Path, target: Path, customers: int, guest_invoices: int) -> dict[str, int]:
    """Write the sample; return its row, customer and invoice counts."""
    with gzip.open(source, "rt", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    all_customers = sorted({r[6] for r in body if r[6]})
    guests = sorted({r[0] for r in body if not r[6]})
    rng = random.Random(SEED)
    chosen = set(rng.sample(all_customers, customers - 1)) | {"12347.0"}
    chosen_guests = set(rng.sample(guests, guest_invoices))
    keep = [r for r in body if r[6] in chosen or (not r[6] and r[0] in chosen_guests)]
    assert any(r[1] == "85123A" for r in keep), "the sample must include StockCode 85123A"
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(keep)
    # mtime=0: the same input gives byte-identical output
    target.write_bytes(gzip.compress(buf.getvalue().encode("utf-8"), compresslevel=9, mtime=0))
    return {
        "rows": len(keep),
        "customers": len(chosen),
        "guest_invoices": len(chosen_guests),
        "cancellation_rows": sum(r[0].startswith("C") for r in keep),
        "bytes": target.stat().st_size,
    }


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", nargs="?", type=Path, default=SOURCE)
    parser.add_argument("--customers", type=int, default=950)
    parser.add_argument("--guest-invoices", type=int, default=60)
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()
    print(make_sample(args.source, args.out, args.customers, args.guest_invoices))


if __name__ == "__main__":
    main()
