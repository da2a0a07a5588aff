"""The reference implementations our SAM engine is checked against (segment-anything, and for the newer
generations segment-anything-hq, sam2 and the EdgeTAM fork of sam2, the last in a child process of its
own: :mod:`.edgetam`), loaded with stand-ins for their torchvision imports: used by
the parity tests and the benchmarks, and by anyone who wants to check the engine on their own weights.
None of the reference packages is a dependency of samrs_hf (``pip install .[test]`` brings
segment-anything, ``.[generations]`` the others)."""
