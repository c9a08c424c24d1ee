"""The data report: duplicates across splits or classes, and :class:`DataReport`, what ``check-data`` prints.

:mod:`helpers.data.checks` looks at ONE file at a time; :mod:`helpers.data.survey` walks a folder
and fills a :class:`DataReport` with the results; this module finds duplicate pictures among
them and formats the report as text (:meth:`DataReport.format`) or JSON (:meth:`DataReport.to_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helpers.data.checks import FileCheck, display_name

NEAR_DUPLICATE_BITS = 6
"""Two photos whose 64-bit difference hashes differ in at most this many bits look the same …"""

NEAR_DUPLICATE_COLOUR = 12.0
"""… if their 8×8 colour thumbnails also differ by at most this much on average (0–255)."""


@dataclass
class Duplicate:
    """Two files that are the same picture, in different splits (a leak) or classes (a label conflict)."""

    first: FileCheck
    second: FileCheck
    bits_differ: int  # 0 with identical bytes is an exact copy

    @property
    def exact(self) -> bool:
        return self.first.digest == self.second.digest

    @property
    def leak(self) -> bool:
        """The two copies sit in different splits: validation has seen training photos."""
        return self.first.split != self.second.split

    @property
    def conflicting_labels(self) -> bool:
        """The same picture is filed under two classes."""
        return self.first.class_name != self.second.class_name


def find_duplicates(
    checks: list[FileCheck],
    max_bits: int = NEAR_DUPLICATE_BITS,
    max_colour: float = NEAR_DUPLICATE_COLOUR,
    block: int = 1024,
) -> list[Duplicate]:
    """Exact and near-duplicate pairs that matter: in DIFFERENT splits (leakage) or classes (conflicting labels).

    Near duplicates have nearly the same difference hash (structure) AND nearly the same
    8×8 colour thumbnail, so two different flat or simple pictures are not confused.
    Compared ``block`` rows at a time, so memory stays small for large folders.
    """
    usable = [c for c in checks if c.usable and c.fingerprint is not None and c.thumbnail is not None]
    if len(usable) < 2:
        return []
    prints = np.array([c.fingerprint for c in usable], dtype=np.uint64)
    found: list[Duplicate] = []
    for start in range(0, len(usable), block):
        distance = np.bitwise_count(prints[start : start + block, None] ^ prints[None, :])
        for ia, ib in zip(*np.nonzero(distance <= max_bits)):
            i = start + int(ia)
            j = int(ib)
            if j <= i:
                continue
            a, b = usable[i], usable[j]
            if a.split == b.split and a.class_name == b.class_name:
                continue  # two copies in one class and split: harmless
            exact = a.digest == b.digest
            if exact or np.abs(a.thumbnail.astype(np.int16) - b.thumbnail).mean() <= max_colour:
                found.append(Duplicate(a, b, int(distance[ia, ib])))
    return found


@dataclass
class DataReport:
    """Everything ``check-data`` prints: per-class counts and sizes, fixes, skips, warnings, errors."""

    root: Path
    layout: str
    class_names: list[str]
    files: list[FileCheck]
    ignored: list[tuple[Path, str]] = field(default_factory=list)  # folders/files outside the layout
    dropped: dict[str, str] = field(default_factory=dict)  # class folder → why it cannot be trained on
    duplicates: list[Duplicate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def valid(self) -> list[FileCheck]:
        return [f for f in self.files if f.usable and f.class_name in self.class_names]

    @property
    def fixed(self) -> list[FileCheck]:
        return [f for f in self.files if f.status == "fixed"]

    @property
    def skipped(self) -> list[FileCheck]:
        return [f for f in self.files if f.status == "skipped"]

    @property
    def ok(self) -> bool:
        """True when training can go ahead (no errors; skipped files are fine)."""
        return not self.errors

    def counts(self) -> dict[str, dict[str, int]]:
        """``{class: {split: number of valid photos}}``."""
        out: dict[str, dict[str, int]] = {c: {} for c in self.class_names}
        for f in self.valid:
            out[f.class_name][f.split] = out[f.class_name].get(f.split, 0) + 1
        return out

    def sizes(self, class_name: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """Smallest and largest (width, height) of a class's valid photos, by area."""
        sizes = [f.size for f in self.valid if f.class_name == class_name and f.size]
        if not sizes:
            return None
        by_area = sorted(sizes, key=lambda s: (s[0] * s[1], s))
        return by_area[0], by_area[-1]

    def warn_about_duplicates(self) -> None:
        """Warn about photos in two splits (leakage) and pictures filed under two classes."""
        root = self.root
        leaks = [d for d in self.duplicates if d.leak]
        if leaks:
            exact = sum(d.exact for d in leaks)
            self.warnings.append(
                f"possible leakage: {len(leaks)} photo pairs appear in two splits ({exact} exact copies, "
                f"{len(leaks) - exact} near-duplicates), e.g. {display_name(leaks[0].first.path, root)} and "
                f"{display_name(leaks[0].second.path, root)}; the validation score is inflated until you "
                "delete one photo of each pair"
            )
        conflicts = [d for d in self.duplicates if d.conflicting_labels]
        if conflicts:
            self.warnings.append(
                f"conflicting labels: {len(conflicts)} pictures are filed under two classes, e.g. "
                f"{display_name(conflicts[0].first.path, root)} and {display_name(conflicts[0].second.path, root)}; "
                "keep each picture in the one class it belongs to"
            )

    def format(self, max_listed: int | None = None) -> str:
        """The report as text (what ``python -m helpers check-data`` prints)."""
        splits = [s for s in ("train", "val", "test") if any(f.split == s for f in self.files)]
        lines = [
            f"Data report for {display_name(self.root)}",
            f"  layout {self.layout}; {len(self.files)} files checked in {self.seconds:.1f} s",
            "",
        ]
        lines += self._class_table(splits)
        for title, group in (("fixed on loading (used)", self.fixed), ("skipped (not used)", self.skipped)):
            if group:
                lines += ["", f"{title}: {len(group)} files"]
                shown = group if max_listed is None else group[:max_listed]
                for f in shown:
                    lines.append(f"  {display_name(f.path, self.root)}: {'; '.join(f.reasons)}")
                if len(shown) < len(group):
                    lines.append(f"  … and {len(group) - len(shown)} more")
        if self.ignored:
            lines += ["", f"ignored outside the layout: {len(self.ignored)}"]
            lines += [f"  {display_name(p, self.root)}: {why}" for p, why in self.ignored]
        lines += self._duplicate_lines(max_listed)
        return "\n".join(lines + self._verdict_lines())

    def _class_table(self, splits: list[str]) -> list[str]:
        """Per class: valid photos in each split and the smallest and largest size; the test photos; the total."""
        counts = self.counts()
        lines = [f"  {'class':16s}" + "".join(f"{s:>7s}" for s in splits) + "   sizes (smallest – largest, w×h)"]
        for name in self.class_names:
            row = f"  {name[:16]:16s}" + "".join(f"{counts[name].get(s, 0):7d}" for s in splits)
            size = self.sizes(name)
            if size:
                (w0, h0), (w1, h1) = size
                row += f"   {w0}×{h0} – {w1}×{h1}"
            lines.append(row)
        if "val" in splits and "test" not in splits:
            lines.append(
                "  test photos (no test/ folder: half of each class's val photos, rounded down): "
                + ", ".join(f"{counts[name].get('val', 0) // 2} {name}" for name in self.class_names)
            )
        lines.append(
            f"  valid photos: {len(self.valid)} in {len(self.class_names)} classes"
            + (f" ({', '.join(self.class_names)})" if self.class_names else "")
        )
        return lines

    def _duplicate_lines(self, max_listed: int | None) -> list[str]:
        if not self.duplicates:
            return []
        lines = [
            "",
            f"duplicates across splits or classes: {len(self.duplicates)} pairs (== same bytes, ≈ same picture)",
        ]
        shown = self.duplicates if max_listed is None else self.duplicates[:max_listed]
        lines += [
            f"  {display_name(d.first.path, self.root)} {'==' if d.exact else '≈'} "
            f"{display_name(d.second.path, self.root)}"
            f"   ({', '.join(k for k, on in (('leak', d.leak), ('two labels', d.conflicting_labels)) if on)})"
            for d in shown
        ]
        if len(shown) < len(self.duplicates):
            lines.append(f"  … and {len(self.duplicates) - len(shown)} more")
        return lines

    def _verdict_lines(self) -> list[str]:
        """The warnings, the errors, and the last line: OK, NOT OK, or why training cannot start."""
        lines = []
        if self.warnings:
            lines += ["", "warnings:"] + [f"  ! {w}" for w in self.warnings]
        if self.errors:
            lines += ["", "errors (training cannot start):"] + [f"  x {e}" for e in self.errors]
        elif self.warnings:
            lines += [
                "",
                f"NOT OK: {len(self.warnings)} warning{'s' * (len(self.warnings) != 1)} above; "
                f"training would use the {len(self.valid)} valid photos, but fix what the warnings say first.",
            ]
        else:
            lines += ["", f"OK: training will use the {len(self.valid)} valid photos."]
        return lines

    __str__ = format

    def to_dict(self) -> dict:
        """A JSON-ready summary (``check-data --json``)."""

        def entry(f: FileCheck) -> dict:
            return {
                "path": display_name(f.path, self.root),
                "split": f.split,
                "class": f.class_name,
                "status": f.status,
                "reasons": f.reasons,
                "size": f.size,
            }

        return {
            "root": str(self.root),
            "layout": self.layout,
            "class_names": self.class_names,
            "counts": self.counts(),
            "n_valid": len(self.valid),
            "fixed": [entry(f) for f in self.fixed],
            "skipped": [entry(f) for f in self.skipped],
            "ignored": [{"path": display_name(p, self.root), "reason": why} for p, why in self.ignored],
            "dropped": self.dropped,
            "duplicates": [
                {
                    "first": display_name(d.first.path, self.root),
                    "second": display_name(d.second.path, self.root),
                    "exact": d.exact,
                    "bits_differ": d.bits_differ,
                    "leak": d.leak,
                    "conflicting_labels": d.conflicting_labels,
                }
                for d in self.duplicates
            ],
            "warnings": self.warnings,
            "errors": self.errors,
            "seconds": self.seconds,
        }
