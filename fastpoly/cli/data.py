"""``fastpoly data info NAME [--path P]``: what a dataset's local files hold (nothing is downloaded).

Registered by :mod:`fastpoly.cli.main` through :func:`register`.
"""
from __future__ import annotations

import numpy as np

__all__ = ["register", "run_info"]


def register(sub):
    """Add the ``data`` subcommand (``data info``)."""
    p = sub.add_parser(
        "data",
        help="real image datasets from local files (digits, MNIST family, CIFAR-10): what was found",
        description=(
            "Real image datasets read from local files, never downloaded: scikit-learn's digits, MNIST, "
            "Fashion-MNIST, KMNIST, EMNIST (IDX, gzip or raw) and CIFAR-10's python batches, from --path "
            "or $FASTPOLY_DATA. 'fastpoly data info NAME' prints where the files were found, the split "
            "sizes, image shape, label counts, pixel range and the source digest."
        ),
    )
    sub2 = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    i = sub2.add_parser("info", help="print what the files of dataset NAME hold")
    i.add_argument("name", help="digits, mnist, fashion-mnist, kmnist, emnist[-SPLIT] or cifar10")
    i.add_argument("--path", default=None, help="directory of the files (default: $FASTPOLY_DATA)")
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_info(args) -> int:
    """Print the dataset summary; errors propagate as ``ValueError`` (one line, exit 2)."""
    from fastpoly.data.core import raw_digest
    from fastpoly.data.sources import read_raw, source

    src = source(args.name)
    raw = read_raw(src, args.path)
    print(f"dataset       {src.name}")
    print(f"found in      {raw.folder or 'scikit-learn (bundled)'}")
    print(f"files         {', '.join(raw.files)}")
    splits = [("train", raw.train_images, raw.train_labels)]
    if raw.test_images is not None and raw.test_labels is not None:
        splits.append(("test", raw.test_images, raw.test_labels))
    else:
        print("split         none official (use split='pooled')")
    for nm, img, lab in splits:
        counts = np.bincount(lab - src.first_label, minlength=src.n_classes)
        print(f"{nm:5s} images  {img.shape[0]} x {img.shape[1:]} {img.dtype}, pixels "
              f"{int(img.min()) if img.size else 0}..{int(img.max()) if img.size else 0}")
        print(f"{nm:5s} labels  {src.first_label}..{src.first_label + src.n_classes - 1}: "
              f"{' '.join(str(int(c)) for c in counts)}")
    print(f"pixel max     {src.pixel_max} ('scale' divides by it)"
          + ("; EMNIST images transposed back to upright" if src.transposed else ""))
    print(f"source digest {raw_digest(raw)}")
    return 0
