"""SAMRS SIOR (from DIOR) in the official release -> the packaged SAMRS features.

datasets >= 4 does not run loading scripts from ``load_dataset``; use this module directly::

    builder = Sior(data_dir="/path/to/SIOR")   # the subset's root as unpacked (any release layout)
    # or name the folders: Sior(data_dir=..., images_dir=[...], labels_dir=".../hbox_segs_init")
    # the COCO-JSON variant: Sior(data_dir=..., variant="coco")
    builder.download_and_prepare()
    ds = builder.as_dataset()

or ``samrs convert-release /path/to/SIOR --subset sior --to HUB_DIR``. The ``ins/*.pkl`` files are read
with :func:`samrs_hf.common.safe_load.load_pickle` (plain data and numpy arrays of the file's own bytes
only): a pickle asking for anything else is refused, never run, and counted as an ``unsafe-file`` skip.
"""

from samrs_hf.hub.release_builder import SamrsReleaseBuilder


class Sior(SamrsReleaseBuilder):
    SUBSET = "sior"


BUILDER = Sior
