"""``datasets.GeneratorBasedBuilder`` modules for SAMRS's official release layout, one per subset
(``sota``, ``sior``, ``fast``). Also reachable as the repository's top-level ``loading_scripts/``."""
