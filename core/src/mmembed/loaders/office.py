"""Office documents (docx, pptx, xlsx, odt, …) → PDF through LibreOffice headless."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import issue_error

OFFICE_EXTENSIONS = frozenset(
    {".doc", ".docx", ".docm", ".dot", ".dotx", ".odt", ".ott", ".rtf", ".wpd",
     ".ppt", ".pptx", ".pptm", ".pps", ".ppsx", ".odp", ".otp",
     ".xls", ".xlsx", ".xlsm", ".ods", ".ots", ".odg", ".vsd", ".vsdx"}
)  # fmt: skip
INSTALL_HINT = (
    "Install LibreOffice (Debian/Ubuntu: `apt-get install -y libreoffice-nogui`; macOS: "
    "`brew install --cask libreoffice`) so that `soffice` is on PATH, or export the file to PDF yourself"
)


def find_soffice() -> str | None:
    """Path of LibreOffice's ``soffice`` executable, if installed."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def convert_to_pdf(
    source: str, *, path: Path | None = None, data: bytes | None = None, timeout: float = 180.0
) -> bytes:
    """The bytes of a PDF export of an Office document (raises ``LoadError`` on any failure)."""
    soffice = find_soffice()
    extension = Path(source).suffix.lower()
    if soffice is None:
        raise issue_error(
            source,
            f"is an Office document ({extension}); converting it needs LibreOffice, which is not "
            "installed (no `soffice` on PATH)",
            INSTALL_HINT,
            code="soffice_missing",
        )
    with tempfile.TemporaryDirectory(prefix="mmembed-office-") as tmp:
        work = Path(tmp)
        if path is None:
            path = work / "input" / (Path(source).name or f"document{extension}")
            path.parent.mkdir()
            path.write_bytes(data or b"")
        out_dir = work / "out"
        command = [
            soffice,
            # A private profile: a running LibreOffice or a parallel conversion cannot lock us out.
            f"-env:UserInstallation={(work / 'profile').as_uri()}",
            "--headless",
            "--norestore",
            "--nolockcheck",
            "--convert-to",
            "pdf",
            "--outdir",
            str(out_dir),
            str(path),
        ]
        env = {**os.environ, "HOME": str(work)}
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise issue_error(
                source,
                f"LibreOffice did not finish converting it to PDF within {timeout:g} s",
                "Export it to PDF yourself, or raise office_timeout",
                code="office_failed",
            ) from exc
        except OSError as exc:
            raise issue_error(
                source, f"LibreOffice could not be started ({exc})", INSTALL_HINT, code="soffice_missing"
            ) from exc
        produced = sorted(out_dir.glob("*.pdf")) if out_dir.is_dir() else []
        if result.returncode != 0 or not produced:
            detail = (result.stderr or result.stdout or "").strip().splitlines()
            raise issue_error(
                source,
                f"LibreOffice could not convert it to PDF (exit {result.returncode}"
                + (f": {detail[-1]}" if detail else "")
                + ")",
                "Open it in LibreOffice to check it is not damaged or password-protected, or export it "
                "to PDF yourself",
                code="office_failed",
            )
        return produced[0].read_bytes()
