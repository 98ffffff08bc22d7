"""A seeded generator of damaged DICOM series, and the judge of what PETriage did with each.

Each ``FuzzCase`` writes a small good series (or a few files of the real series), damages it in
one way and says which words a message about that damage must contain. ``judge`` loads it the
way ``petriage info`` does (scan, load, the gate without models) and sorts the outcome into
clean (refused or warned, naming the defect), questionable (a verdict could follow although
the input is damaged, or the message names something else) or crash (an exception that is not
a PETriage error). Used by Testing/ingest/test_fuzz.py and scripts/fuzz_ingest.py.
"""
from __future__ import annotations

import contextlib
import logging
import random
import shutil
import warnings
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from support.dicom_factory import chest_hu, write_series

SLICES, SIDE = 12, 32  # enough slices for the gate's slice count, small enough to be quick


@dataclass(frozen=True)
class FuzzCase:
    name: str
    keywords: tuple[str, ...]  # a message naming the defect contains one of these (case-insensitive)
    build: Callable[[Path], None]  # writes the damaged series into the folder
    damaged: bool = True  # False: a control case that must load and pass the gate
    # for damage that may be too small to matter: True when the loaded volume is within tolerance
    harmless: Callable[[object], bool] | None = None


@dataclass(frozen=True)
class Outcome:
    case: str
    kind: str  # "clean", "questionable" or "crash"
    detail: str


def set_raw(ds: pydicom.Dataset, keyword: str, vr: str, value) -> None:
    """Set an element to any value and VR, valid or not (what a broken exporter writes)."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    ds[tag] = DataElement(tag, vr, value)


def rewrite(path: Path, edit: Callable[[pydicom.Dataset], None]) -> None:
    with _lenient_writing():
        ds = pydicom.dcmread(path)
        edit(ds)
        ds.save_as(path)


@contextlib.contextmanager
def _lenient_writing():
    """Write invalid values without pydicom's warnings (the damage is the point)."""
    settings, plog = pydicom.config.settings, logging.getLogger("pydicom")
    mode, disabled = settings.writing_validation_mode, plog.disabled
    settings.writing_validation_mode, plog.disabled = pydicom.config.IGNORE, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        settings.writing_validation_mode, plog.disabled = mode, disabled


def write_good(folder: Path, compression: str | None = None, **options) -> list[Path]:
    return write_series(folder, chest_hu(SLICES, SIDE, SIDE, seed=1), compression=compression, **options)


# Header values a broken exporter writes: (label, VR, value). Binary VRs get bytes.
BAD_NUMBERS = [("text", "LO", "abc"), ("multi", "DS", "1\\2\\3"), ("nan", "DS", "nan"), ("inf", "DS", "inf"),
               ("hex", "LO", "0x1F"), ("huge", "DS", "1e10"), ("negative", "DS", "-5"), ("zero", "DS", "0"),
               ("empty-multi", "DS", "\\"), ("binary", "FD", float("nan"))]
HEADER_TAGS = ["RescaleSlope", "RescaleIntercept", "SliceThickness", "PixelSpacing", "InstanceNumber",
               "ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns", "BitsAllocated"]
HARMLESS = {("RescaleIntercept", "zero"), ("RescaleIntercept", "negative"), ("InstanceNumber", "zero"),
            ("InstanceNumber", "negative"), ("InstanceNumber", "huge")}  # valid values: control cases


def header_case(keyword: str, label: str, vr: str, value, every: bool) -> FuzzCase:
    def build(folder: Path) -> None:
        paths = write_good(folder)
        for p in (paths if every else paths[5:6]):
            rewrite(p, lambda ds: set_raw(ds, keyword, vr, value))
    # a valid intercept on every slice is a uniform shift (the lung check's business); on one slice it is damage
    harmless = (keyword, label) in HARMLESS and (every or keyword == "InstanceNumber")
    return FuzzCase(f"header-{keyword}-{label}-{'all' if every else 'one'}", (keyword,), build, damaged=not harmless)


def _geometry_case(name: str, keywords: tuple[str, ...], **options) -> FuzzCase:
    return FuzzCase(name, keywords, lambda folder: write_good(folder, **options))


def write_tilted(folder: Path, degrees: float = 8.0) -> None:
    """Axial slices whose positions move along y as z increases: a gantry-tilted acquisition."""
    paths = write_good(folder)
    shift = float(np.tan(np.deg2rad(degrees)) * 2.5)
    for k, p in enumerate(paths):
        rewrite(p, lambda ds, k=k: setattr(ds, "ImagePositionPatient",
                                            [-30.0, -40.0 + k * shift, -100.0 + k * 2.5]))


def write_ipp_nan(folder: Path) -> None:
    paths = write_good(folder)
    rewrite(paths[4], lambda ds: set_raw(ds, "ImagePositionPatient", "DS", "-30\\nan\\-90"))


def write_every_other_unreadable(folder: Path) -> None:
    for p in write_good(folder)[1::2]:
        p.write_bytes(p.read_bytes()[:400])


def _truncate(folder: Path, rng: random.Random, header: bool) -> None:
    p = write_good(folder)[rng.randrange(SLICES)]
    data = p.read_bytes()
    cut = rng.randrange(200, 700) if header else len(data) - rng.randrange(1, 1500)
    p.write_bytes(data[:cut])


def write_pixel_garbage(folder: Path, rng: random.Random) -> None:
    """Uncompressed pixel data replaced by noise over the whole 16-bit range (what a corrupt decoder gives)."""
    paths = write_good(folder)
    for p in rng.sample(paths, 2):
        rewrite(p, lambda ds: setattr(ds, "PixelData",
                                       np.random.default_rng(rng.randrange(1 << 30)).integers(
                                           0, 65535, SIDE * SIDE, dtype=np.uint16).tobytes()))


def write_corrupt_compressed(folder: Path, rng: random.Random, compression: str) -> None:
    """Flip bytes inside the encapsulated fragments of one slice (RLE or JPEG 2000)."""
    p = write_good(folder, compression=compression)[rng.randrange(SLICES)]
    data = bytearray(p.read_bytes())
    start = data.rfind(b"\xfe\xff\x00\xe0") + 8  # last fragment
    for _ in range(rng.randrange(4, 40)):
        k = rng.randrange(start, len(data) - 8)
        data[k] = rng.randrange(256)
    p.write_bytes(bytes(data))


def write_bad_rle_table(folder: Path, rng: random.Random) -> None:
    """The RLE segment table says more segments or offsets past the end (decoder panics)."""
    p = write_good(folder, compression="rle")[rng.randrange(SLICES)]
    data = bytearray(p.read_bytes())
    start = data.rfind(b"\xfe\xff\x00\xe0") + 8
    struct.pack_into("<I", data, start, rng.choice([15, 3, 0, 255]))
    struct.pack_into("<I", data, start + 4, rng.choice([1 << 30, 0, 7]))
    p.write_bytes(bytes(data))


def _huge_size(folder: Path, keyword: str) -> None:
    paths = write_good(folder)
    rewrite(paths[3], lambda ds: setattr(ds, keyword, 60000))
    rewrite(paths[4], lambda ds: setattr(ds, keyword, 60000))


def _dicm_garbage(folder: Path, rng: random.Random) -> None:
    paths = write_good(folder)
    paths[6].write_bytes(b"\0" * 128 + b"DICM" + bytes(rng.randrange(256) for _ in range(600)))


def synthetic_cases(rng: random.Random) -> list[FuzzCase]:
    cases = [header_case(kw, label, vr, value, every)
             for kw in HEADER_TAGS for label, vr, value in BAD_NUMBERS for every in (False, True)]
    cases += [
        FuzzCase("control", (), lambda f: write_good(f), damaged=False),
        FuzzCase("control-rle", (), lambda f: write_good(f, compression="rle"), damaged=False),
        FuzzCase("slope-zero", ("RescaleSlope",),
                 lambda f: [rewrite(p, lambda ds: setattr(ds, "RescaleSlope", 0)) for p in write_good(f)]),
        _geometry_case("iop-non-unit", ("ImageOrientationPatient",), orientation=(2, 0, 0, 0, 1, 0)),
        _geometry_case("iop-non-orthogonal", ("ImageOrientationPatient",), orientation=(1, 0, 0, 0.6, 0.8, 0)),
        _geometry_case("iop-degenerate", ("ImageOrientationPatient",), orientation=(1, 0, 0, 1, 0, 0)),
        _geometry_case("iop-zero", ("ImageOrientationPatient",), orientation=(0, 0, 0, 0, 0, 0)),
        FuzzCase("gantry-tilt", ("tilt",), write_tilted),
        FuzzCase("ipp-nan", ("ImagePositionPatient",), write_ipp_nan),
        FuzzCase("every-other-unreadable", ("unreadable",), write_every_other_unreadable),
        FuzzCase("huge-rows", ("Rows",), lambda f: _huge_size(f, "Rows")),
        FuzzCase("huge-columns", ("Columns",), lambda f: _huge_size(f, "Columns")),
    ]
    for n in range(4):
        seed = rng.randrange(1 << 30)
        cases += [
            FuzzCase(f"truncated-header-{n}", ("unreadable", "truncated"),
                     lambda f, s=seed: _truncate(f, random.Random(s), header=True)),
            FuzzCase(f"truncated-pixels-{n}", ("pixel data", "PixelData", "decode"),
                     lambda f, s=seed: _truncate(f, random.Random(s), header=False)),
            FuzzCase(f"pixel-garbage-{n}", ("pixel values", "implausible"),
                     lambda f, s=seed: write_pixel_garbage(f, random.Random(s))),
            FuzzCase(f"rle-corrupt-{n}", ("decode", "pixel values", "implausible"),
                     lambda f, s=seed: write_corrupt_compressed(f, random.Random(s), "rle"), harmless=_close_to_good),
            FuzzCase(f"j2k-corrupt-{n}", ("decode", "pixel values", "implausible"),
                     lambda f, s=seed: write_corrupt_compressed(f, random.Random(s), "j2k"), harmless=_close_to_good),
            FuzzCase(f"rle-segment-table-{n}", ("decode",), lambda f, s=seed: write_bad_rle_table(f, random.Random(s))),
            FuzzCase(f"dicm-garbage-{n}", ("unreadable",), lambda f, s=seed: _dicm_garbage(f, random.Random(s))),
        ]
    return cases


REAL_FILES = 12  # files of the real series per case: enough for the gate, quick to decode


def copy_real_subset(real: Path, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(real.glob("*.dcm"))[40:40 + REAL_FILES]:
        out.append(Path(shutil.copy(src, folder / src.name)))
    return out


def _real_header(real: Path, rng: random.Random) -> FuzzCase:
    keyword = rng.choice(HEADER_TAGS)
    label, vr, value = rng.choice(BAD_NUMBERS)
    index = rng.randrange(REAL_FILES)

    def build(folder: Path) -> None:
        rewrite(copy_real_subset(real, folder)[index], lambda ds: set_raw(ds, keyword, vr, value))
    return FuzzCase(f"real-{keyword}-{label}-{index}", (keyword,), build,
                    damaged=(keyword, label) not in HARMLESS or keyword != "InstanceNumber")


def real_jpeg_case(real: Path, rng: random.Random) -> FuzzCase:
    """Corrupt or truncated entropy data of a JPEG Lossless slice (decodes to garbage, not an error)."""
    index, flips, cut = rng.randrange(REAL_FILES), rng.randrange(1, 30), rng.random() < 0.3

    def build(folder: Path) -> None:
        p = copy_real_subset(real, folder)[index]
        data = bytearray(p.read_bytes())
        sos = data.find(b"\xff\xda")  # start of scan: entropy-coded data follows
        if cut:  # zeros from a point on: truncated entropy data, file lengths kept
            end = data.rfind(b"\xff\xd9")
            start = sos + 200 + index * 97
            data[start:end] = bytes(end - start)
        local = random.Random(index * 1000 + flips)
        end = data.rfind(b"\xff\xd9")  # end of image: bytes after it are fragment padding
        for _ in range(flips):
            k = local.randrange(sos + 20, end - 4)
            data[k] ^= 1 << local.randrange(8)
        p.write_bytes(bytes(data))
    return FuzzCase(f"real-jpeg-{'cut' if cut else 'flip'}-{flips}-{index}", ("decode", "pixel values", "implausible"),
                    build, harmless=lambda volume: _close_to_reference(real, volume))


HARMLESS_MEAN_HU = 1.0  # a bit flip that moves the series by less than this on average cannot change a verdict
_references: dict[Path, object] = {}


def _close_to_good(volume) -> bool:
    good = chest_hu(SLICES, SIDE, SIDE, seed=1)
    return good.shape == volume.hu.shape and float(np.abs(good.astype(np.float32) - volume.hu).mean()) < HARMLESS_MEAN_HU


def _close_to_reference(real: Path, volume) -> bool:
    """True when the damaged volume differs from the undamaged files by under HARMLESS_MEAN_HU on average
    (a flipped bit libjpeg recovers from within a few rows)."""
    import tempfile

    from PETriageLib.ingest.load import load_series

    if real not in _references:
        with tempfile.TemporaryDirectory() as tmp:
            _references[real] = load_series(copy_real_subset(real, Path(tmp))).hu
    ref = _references[real]
    return ref.shape == volume.hu.shape and float(np.abs(ref.astype(np.float32) - volume.hu).mean()) < HARMLESS_MEAN_HU


def real_cases(real: Path, rng: random.Random, n: int) -> list[FuzzCase]:
    cases = [FuzzCase("real-control", (), lambda f: copy_real_subset(real, f), damaged=False)]
    for _ in range(n):
        cases.append(real_jpeg_case(real, rng) if rng.random() < 0.3 else _real_header(real, rng))
    return cases


def sample_cases(seed: int, count: int, real: Path | None) -> list[FuzzCase]:
    """``count`` cases drawn with ``seed``: synthetic ones and, when the real series is there,
    about a third mutated copies of it. The controls always come first."""
    rng = random.Random(seed)
    synthetic = synthetic_cases(rng)
    controls = [c for c in synthetic if not c.damaged and c.name.startswith("control")]
    rest = [c for c in synthetic if c not in controls]
    n_real = count // 3 if real is not None else 0
    picked = controls + rng.sample(rest, min(len(rest), max(0, count - n_real - len(controls))))
    if real is not None:
        picked += real_cases(real, rng, count - len(picked) - 1)
    return picked


def _messages_of(volume, problem: str | None) -> list[str]:
    return [*volume.warnings, *([problem] if problem else [])]


def judge(case: FuzzCase, folder: Path) -> Outcome:
    """What PETriage makes of one damaged series: scan (``info``), load, the gate without models."""
    from PETriageLib.errors import PETriageError
    from PETriageLib.ingest.load import load_info, scan_series
    from PETriageLib.triage.eligibility import series_problem

    case.build(folder)
    try:
        with warnings.catch_warnings(record=True) as leaked:
            warnings.simplefilter("always")
            infos = scan_series(folder)
            volume = load_info(infos[0])
            problem = series_problem(volume)
        if leaked:
            return Outcome(case.name, "questionable", f"Python warnings leaked: {str(leaked[0].message)[:200]}")
    except PETriageError as exc:
        text = str(exc)
        named = not case.keywords or any(k.lower() in text.lower() for k in case.keywords)
        if not case.damaged:
            return Outcome(case.name, "questionable", f"a good series refused: {text[:300]}")
        return Outcome(case.name, "clean" if named else "questionable", f"{type(exc).__name__}: {text[:300]}")
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: B902 - a Rust panic derives from BaseException
        return Outcome(case.name, "crash", f"{type(exc).__name__}: {str(exc)[:300]}")
    messages = _messages_of(volume, problem)
    if not case.damaged:
        ok = problem is None
        return Outcome(case.name, "clean" if ok else "questionable", problem or "loads and passes the gate")
    named = [m for m in messages if any(k.lower() in m.lower() for k in case.keywords)]
    if problem is not None and named:
        return Outcome(case.name, "clean", f"not analysable: {problem[:300]}")
    if named:  # a verdict would follow, but with the defect named in the warnings
        return Outcome(case.name, "clean", f"warned: {named[0][:300]}")
    if case.harmless is not None and case.harmless(volume):
        return Outcome(case.name, "clean", f"damage too small to matter (< {HARMLESS_MEAN_HU} HU mean)")
    return Outcome(case.name, "questionable", f"gate: {problem}; warnings: {messages[:3]}")


def run_cases(cases: Sequence[FuzzCase], root: Path) -> list[Outcome]:
    outcomes = []
    for n, case in enumerate(cases):
        folder = root / f"{n:04d}"
        outcomes.append(judge(case, folder))
        shutil.rmtree(folder, ignore_errors=True)
    return outcomes


def counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    out = {"cases": len(outcomes), "clean": 0, "questionable": 0, "crash": 0}
    for o in outcomes:
        out[o.kind] += 1
    return out
