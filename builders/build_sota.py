"""`accelerate launch builders/build_sota.py --source DIR --out DIR [options]`: the SOTA preset of `samrs build`.

Every process labels its share of the source images (image i goes to process i % N); see
`samrs build --help` for the options.
"""

import sys

from samrs_hf.cli.cmd_build import main_for_preset

if __name__ == "__main__":
    sys.exit(main_for_preset("sota"))
