"""Check a dataset before training: ``python tools/check_dataset.py --cfg FILE [--split S]``.

Reads every annotation of the split and reports, with file names: missing or unreadable images and PNGs, PNG ids
absent from segments_info and the reverse, unknown categories, PNGs that are not RGB, size and area mismatches, crowd
flags on stuff classes. Exits 1 when it finds a problem, else prints a summary (images, segments per class,
thing/stuff pixel share).
"""
import sys

from _common import parse_config, run

from segmentation.data import build_dataset
from segmentation.data.check import check_dataset
from segmentation.data.datasets.base import DatasetError


def main(argv=None):
    def extra(parser):
        parser.add_argument("--split", default=None, help="split to check (default: DATASET.TRAIN_SPLIT)")
    args, cfg = parse_config("Check a panoptic dataset.", argv, extra)
    split = args.split or cfg.DATASET.TRAIN_SPLIT
    try:
        dataset = build_dataset(cfg, split, is_train=False)
    except (OSError, ValueError, DatasetError) as e:  # missing folders or files, unreadable JSON: a finding
        print(f"ERROR {e}")
        print(f"{cfg.DATASET.DATASET} [{split}] cannot be read.")
        return 1
    report = check_dataset(dataset)
    for error in report.errors:
        print(f"ERROR {error}")
    for note in report.notes:
        print(f"NOTE {note}")
    if not report.ok:
        print(f"{len(report.errors)} problem(s) in {cfg.DATASET.DATASET} [{split}].")
        return 1
    print(f"{cfg.DATASET.DATASET} [{split}]: no problem found.")
    print(report.summary(dataset.metadata))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
