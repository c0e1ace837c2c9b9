"""Make the perturbation gallery (``docs/perturbations.md`` and ``docs/perturbations/*.png``).

A thin entry point: the gallery code lives in :mod:`medfm_hf.reporting.gallery`.

Usage::

    python scripts/make_gallery.py                    # all perturbations -> docs/
    python scripts/make_gallery.py --names jpeg,rotate --out /tmp/gallery
"""

from __future__ import annotations

import sys

from medfm_hf.reporting.gallery import TILE, main, pick_record  # noqa: F401  (re-exported for callers)

if __name__ == "__main__":
    sys.exit(main())
