"""Stage 2: boxes to SAM prompts, SAM run options, loading and attention, the labeling engine, RLE."""
