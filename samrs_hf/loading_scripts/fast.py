"""SAMRS FAST (from FAIR1M-2.0) in the official release -> the packaged SAMRS features.

datasets >= 4 does not run loading scripts from ``load_dataset``; use this module directly::

    builder = Fast(data_dir="/path/to/FAST")   # the subset's root as unpacked (any release layout)
    # or name the folders: Fast(data_dir=..., images_dir=[...], labels_dir=".../hbox_segs_init")
    # the COCO-JSON variant: Fast(data_dir=..., variant="coco")
    builder.download_and_prepare()
    ds = builder.as_dataset()

or ``samrs convert-release /path/to/FAST --subset fast --to HUB_DIR``. The ``ins/*.pkl`` files are read
with :func:`samrs_hf.common.safe_load.load_pickle` (plain data and numpy arrays of the file's own bytes
only): a pickle asking for anything else is refused, never run, and counted as an ``unsafe-file`` skip.
"""

from samrs_hf.hub.release_builder import SamrsReleaseBuilder


class Fast(SamrsReleaseBuilder):
    SUBSET = "fast"


BUILDER = Fast
