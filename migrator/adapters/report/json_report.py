"""The parity result as a JSON file (`migrator/domain/parity.py` says the document).

Written as a stream while the run goes (`JsonResultFile`: every difference goes to disk as it is
confirmed, nothing held) under `parity.json.partial`, and renamed to `parity.json` only when the
run finished and the file is flushed to disk: a `parity.json` is always whole, and a run that
died leaves its `.partial` beside it, which no reader takes for a result.

Read back as a stream (`read_result`): the document's items in order, in bounded memory. A file
that is missing, not UTF-8, or not a parity result of this version is refused with what to do
(OperatorError, WrongReportVersion): exit 2, nothing changed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from migrator.domain.parity import (
    Difference,
    DocumentWriter,
    Header,
    Item,
    RoomResult,
    Summary,
    read_document,
)
from migrator.errors import OperatorError, WrongReportVersion

RESULT_NAME = "parity.json"


class JsonResultFile:
    """The result of one run, written to `directory/parity.json` (made if missing)."""

    def __init__(self, directory: Path, header: Header) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / RESULT_NAME
        self.partial = directory / (RESULT_NAME + ".partial")
        self._file: TextIO = self.partial.open("w", encoding="utf-8", newline="\n")
        self._writer = DocumentWriter(self._file.write, header)

    def start_room(self, room_id: int) -> None:
        self._writer.start_room(room_id)

    def difference(self, difference: Difference) -> None:
        self._writer.difference(difference)

    def end_room(self, result: RoomResult) -> None:
        self._writer.end_room(result)
        self._file.flush()  # a room's lines are on disk once it is done (a reader may tail it)

    def close(self, summary: Summary) -> Path:
        """Ends the document, makes it durable, and gives it its final name."""
        self._writer.close(summary)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial, self.path)
        with contextlib.suppress(OSError):  # the rename itself, durable where it can be
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return self.path

    def abandon(self) -> Path:
        """The run failed: the partial document stays under its `.partial` name."""
        with contextlib.suppress(OSError):
            self._file.close()
        return self.partial


def read_result(path: Path) -> Iterator[Item]:
    """The document at `path`, item by item (`read_document`)."""
    try:
        file = path.open("r", encoding="utf-8", newline="")
    except FileNotFoundError:
        raise OperatorError(
            f"no parity result at {path}: give the parity.json a run of `chat-migrate parity` "
            "wrote (it prints where)"
        ) from None
    except OSError as exc:
        raise OperatorError(
            f"cannot read the parity result {path}: {exc.strerror or exc}"
        ) from None
    with file:
        try:
            yield from read_document(file.read)
        except UnicodeDecodeError as exc:
            raise WrongReportVersion(
                f"{path} is not a parity result (not UTF-8 text: {exc.reason}); give the "
                "parity.json a run of `chat-migrate parity` wrote"
            ) from None
