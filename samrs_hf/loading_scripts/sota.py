"""SAMRS SOTA (from DOTA-v2.0) in the official release layout -> the packaged SAMRS features.

datasets >= 4 does not run loading scripts from ``load_dataset``; use this module directly::

    builder = Sota(data_dir="/path/to/SOTA")   # folder with the images, gray/, color/, ins/*.pkl
    builder.download_and_prepare()
    ds = builder.as_dataset()

or ``samrs convert-release /path/to/SOTA --subset sota --to HUB_DIR``. The ``ins/*.pkl`` files are read
with a restricted unpickler (builtins and numpy arrays only): a pickle holding anything else is
refused instead of being run.
"""

from samrs_hf.release import SamrsReleaseBuilder


class Sota(SamrsReleaseBuilder):
    SUBSET = "sota"


BUILDER = Sota
