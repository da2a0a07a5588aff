"""The release's own train / validation split (``train.txt`` / ``valid.txt``, or the COCO JSON files).

When the release ships its split, that split (the one the paper's Table 9 used) decides, not the hash
rule of :mod:`.splits`. Both sides can disagree with the folder: a listed name with no file is a
``listed-but-missing`` note, a file listed nowhere is left out as a ``not-in-split-list`` skip; both
are counted in the report and the dataset card says which rule made the splits and these counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..build.layout import IMAGE_EXTENSIONS
from ..sources.records import Report, SourceError

LISTED_MISSING = "listed-but-missing"
UNLISTED = "not-in-split-list"
LISTED_TWICE = "listed-in-two-splits"
STRIPPED_EXTENSIONS = frozenset(IMAGE_EXTENSIONS) | {".pkl", ".json", ".txt"}


def list_name(entry: str) -> str:
    """A list entry as a release name: ``P0001__1024__0___0.png`` and ``P0001__1024__0___0`` alike."""
    name = Path(entry.strip()).name
    stem, dot, ext = name.rpartition(".")
    return stem if dot and f".{ext.lower()}" in STRIPPED_EXTENSIONS else name


def read_split_list(path) -> list[tuple[str, str]]:
    """``(name, "file:line")`` of each non-empty line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read the split list ({exc})") from exc
    return [(list_name(line), f"{path}:{n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]


@dataclass
class OfficialSplits:
    """Name -> split from the release's lists, with what did not match the folder."""

    sources: dict[str, str]
    """split -> where its names came from (``trainval/train.txt``)"""
    split_of: dict[str, str] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    """split -> listed names with no file"""
    unlisted: int = 0

    def assign(self, name: str, where: str, report: Report) -> str | None:
        """The split of a file, or None (a counted ``not-in-split-list`` skip)."""
        split = self.split_of.get(name)
        if split is None:
            self.unlisted += 1
            report.skip(UNLISTED, where, f"{name} is in none of {', '.join(self.sources.values())}")
        return split

    def describe(self) -> str:
        """The card's sentence on how the splits were made."""
        lists = ", ".join(f"`{s}` from `{src}`" for s, src in self.sources.items())
        missing = sum(self.missing.values())
        return (f"Splits are the release's official ones ({lists}), not the hash rule. "
                f"{missing} listed name(s) have no file in the release"
                + (f" ({', '.join(f'{s}: {n}' for s, n in self.missing.items() if n)})" if missing else "")
                + f"; {self.unlisted} file(s) listed in neither were left out (`{UNLISTED}` skips).")


def official_splits(listed: dict[str, list[tuple[str, str]]], sources: dict[str, str], present,
                    report: Report) -> OfficialSplits:
    """Match the lists (split -> ``(name, where)``) against the names ``present`` in the folder."""
    present = set(present)
    out = OfficialSplits(dict(sources))
    for split, entries in listed.items():
        out.missing[split] = 0
        for name, where in entries:
            earlier = out.split_of.get(name)
            if earlier is not None:
                if earlier != split:
                    report.note(LISTED_TWICE, where, f"{name} is already listed in {sources[earlier]}; kept in {earlier}")
                continue
            out.split_of[name] = split
            if name not in present:
                out.missing[split] += 1
                report.note(LISTED_MISSING, where, f"{name} is listed but the release has no such file")
    return out


def list_files_splits(lists: dict[str, Path], present, report: Report, root: Path) -> OfficialSplits | None:
    """:func:`official_splits` of ``train.txt`` / ``valid.txt`` files, or None when there are none."""
    if not lists:
        return None
    listed = {split: read_split_list(path) for split, path in lists.items()}
    return official_splits(listed, {s: shown_path(p, root) for s, p in lists.items()}, present, report)


def shown_path(path: Path, root: Path) -> str:
    """``path`` relative to the release root, as the card names it (never a local folder)."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name
