"""Every error a user can cause, and the one table that maps them to exit codes.

Exit codes (documented in README.md, "Exit codes"):
  0  success (plan/rewrite: also when nothing changes)
  1  a check found problems: `aiohook test` failures, `rules lint` findings,
     `rules validate` errors, `doctor` and `status` problems
  2  usage error (bad command line)
  3  invalid input XML (malformed, not a domain, DTD/entities, too large, empty)
  4  invalid rules or settings file (schema or semantic error)
  5  invalid recorded-facts file
  6  I/O error reading or writing a user-named file
  7  libvirt error (apply: virsh)
  70 internal error (a bug in aiohook: please report it)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_BAD_XML = 3
EXIT_BAD_POLICY = 4
EXIT_BAD_FACTS = 5
EXIT_IO = 6
EXIT_LIBVIRT = 7
EXIT_INTERNAL = 70


class AiohookError(Exception):
    """Base of user-facing errors: str(err) is the whole one-line message."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None):
        self.message = message
        self.file = file
        self.line = line
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        return (where + self.message).replace("\n", " ")


class UsageError(AiohookError):
    exit_code = EXIT_USAGE


class DomainXMLError(AiohookError):
    exit_code = EXIT_BAD_XML


class PolicyError(AiohookError):
    """Invalid rules.yaml, profile, test manifest or settings file."""

    exit_code = EXIT_BAD_POLICY


class FactsError(AiohookError):
    exit_code = EXIT_BAD_FACTS


class FileAccessError(AiohookError):
    exit_code = EXIT_IO


class LibvirtError(AiohookError):
    exit_code = EXIT_LIBVIRT


def exit_code_for(err: BaseException) -> int:
    """The single mapping from an exception to a process exit code."""
    if isinstance(err, AiohookError):
        return err.exit_code
    if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return EXIT_IO
    return EXIT_INTERNAL
