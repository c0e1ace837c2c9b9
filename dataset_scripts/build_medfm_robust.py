"""Recipe: build the published medfm-robust benchmark from the raw public downloads and push it to the Hub.

This is what the dataset card links to as "how this was made". Download each dataset yourself (their
licences forbid redistribution by us in several cases; `docs/sources.md` says where and which layout), then:

    python dataset_scripts/build_medfm_robust.py \
        --isic2016 /data/ISIC2016 --brain-tumor-mri /data/figshare_brain --busi /data/Dataset_BUSI_with_GT \
        --kvasir /data/Kvasir-SEG --refuge /data/REFUGE --pannuke /data/PanNuke --ct-nifti /data/FLARE22 \
        --out medfm-robust --num-proc 16 --push ORG/medfm-robust

Every flag left out skips that source; `--demo` adds the embedded demo set. The build is resumable: rerun the
same command after an interruption.
"""

from __future__ import annotations

import argparse
import sys

from medfm_hf.cli import main as cli

SOURCES = ("isic2016", "brain_tumor_mri", "busi", "kvasir", "refuge", "pannuke", "ct_nifti", "omnimedvqa", "roco",
           "mecovqa")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for s in SOURCES:
        ap.add_argument("--" + s.replace("_", "-"), dest=s, default=None, help=f"path of the {s} download")
    ap.add_argument("--demo", action="store_true", help="include the embedded demo set")
    ap.add_argument("--out", default="medfm-robust")
    ap.add_argument("--num-proc", type=int, default=8)
    ap.add_argument("--max-size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--push", default=None, help="ORG/NAME to upload the finished folder to")
    args = ap.parse_args()
    parts = [f"{s}={getattr(args, s)}" for s in SOURCES if getattr(args, s)]
    if args.demo:
        parts.insert(0, "demo")
    if not parts:
        ap.error("give at least one source path (or --demo)")
    rc = cli(["build", "--sources", ",".join(parts), "--out", args.out, "--num-proc", str(args.num_proc),
              "--max-size", str(args.max_size), "--seed", str(args.seed)])
    if rc == 0 and args.push:
        rc = cli(["push", args.out, "--repo-id", args.push, "--large"])
    return rc


if __name__ == "__main__":
    sys.exit(main())
