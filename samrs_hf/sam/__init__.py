"""Stage 2: boxes to SAM prompts, SAM loading and attention, the labeling engine, RLE."""
