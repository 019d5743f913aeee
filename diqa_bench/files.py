"""Writing files that others read: atomically, with the permissions a shared result needs.

At the bottom of the package (it imports none of it), so that light commands such as ``score -o``
write their output without importing the statistics or scipy.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from diqa_bench.errors import UserError


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600: results are meant to be read by others
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (setting it briefly
    would race with threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# An image file larger than this is not read at all: far above a 40 MP photo in any format (a
# 16-bit RGBA TIFF of 40 MP is 320 MB), and it bounds what hashing a file can cost.
MAX_IMAGE_BYTES = 1 << 30


def image_file_problem(path: str | Path) -> str | None:
    """Why ``path`` is not read as an image file, or None when it may be: only regular files (a FIFO
    blocks the reader, a link to /dev/zero never ends) of at most MAX_IMAGE_BYTES, not empty."""
    import stat

    try:
        st = os.stat(path)  # follows symbolic links: what would be read
    except FileNotFoundError:
        return f"image file not found: {path}"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "special")
        return f"not a regular file ({kind})"
    if st.st_size == 0:
        return "image file is empty (0 bytes)"
    if st.st_size > MAX_IMAGE_BYTES:
        return f"file too large ({st.st_size / 2**30:.1f} GiB; image files of at most {MAX_IMAGE_BYTES >> 30} GiB are read)"
    return None


def check_output_file(path: str | Path, flag: str) -> Path:
    """The file an ``-o`` option names, checked before any work: not a folder, in a folder where a
    file can be created (tried, not guessed from permission bits). Raises a one-line UserError."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise UserError(f"{flag} {path}: exists and is not a regular file")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write in {folder} ({exc.strerror or exc})") from None
    return path


def write_output(path: Path, text: str, flag: str) -> None:
    """:func:`atomic_write` for a command's ``-o`` file: a failure (a full disk) is one line, and
    the previous file, if any, is left as it was."""
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write ({exc.strerror or exc}); nothing was written there") from None


# Spreadsheet formula injection (OWASP, "CSV Injection"): a text cell that starts with one of these
# is run as a formula by Excel or LibreOffice when a CSV is opened. Every CSV this project writes
# goes through csv_cell / frame_csv, which prefix such a cell with a single quote; numbers
# (-0.5, +3) and single characters ("-") stay as they are. read_csv undoes it, so re-reading a CSV gives the original values.
FORMULA_STARTS = frozenset("=+-@\t\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text == text.strip()


def csv_cell(value: Any) -> Any:
    """A cell as written to a CSV: text that a spreadsheet would run as a formula gets a leading
    quote (so does text that already starts with quotes before such a character, so that
    :func:`csv_original` can tell them apart)."""
    if not isinstance(value, str) or len(value) < 2 or value.lstrip("'")[:1] not in FORMULA_STARTS or _is_number(value):
        return value  # one character is no formula: the zero-shot train set "-" stays as it is
    return "'" + value


def csv_original(value: Any) -> Any:
    """The inverse of :func:`csv_cell`."""
    if isinstance(value, str) and len(value) > 2 and value.startswith("'") and value[1:].lstrip("'")[:1] in FORMULA_STARTS:
        return value[1:]
    return value


def json_rows(df) -> list[dict[str, Any]]:
    """The rows of a DataFrame as JSON objects, with NaN and infinities as null (metrics.json)."""
    rows = df.to_dict(orient="records")
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                r[k] = None
    return rows


def frame_csv(df) -> str:
    """A DataFrame as CSV text (no index), its text cells neutralised by :func:`csv_cell`."""
    out = df.copy()
    for c in out.columns:
        if _text_column(out[c]):
            out[c] = out[c].map(csv_cell)
    return out.to_csv(index=False)


def _text_column(column) -> bool:
    import pandas as pd

    return column.dtype == object or pd.api.types.is_string_dtype(column.dtype)


def read_csv(path: str | Path, **kwargs):
    """``pandas.read_csv`` of a CSV this project wrote: text cells back to their original values."""
    import pandas as pd

    df = pd.read_csv(path, **kwargs)
    for c in df.columns:
        if _text_column(df[c]):
            df[c] = df[c].map(csv_original)
    return df
