"""The HTTP edge for package indexes: timeouts, retries with backoff, errors that name the host."""

from __future__ import annotations

import io
import re
import time
from urllib.parse import urlsplit

import requests

from builder.errors import IndexUnavailable, NotFound

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
ATTEMPTS = 3
BACKOFF_S = 0.5
_RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class Getter:
    """GETs with one session; whole bodies, byte ranges and sizes."""

    def __init__(self, attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S) -> None:
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "reprobuild"
        self._attempts = attempts
        self._backoff_s = backoff_s

    def __enter__(self) -> Getter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def get(self, url: str, headers: dict[str, str] | None = None) -> bytes:
        return self._request("GET", url, headers or {}).content

    def get_range(self, url: str, start: int, length: int) -> bytes:
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        response = self._request("GET", url, headers)
        if response.status_code != 206:
            raise IndexUnavailable(
                f"{_host(url)} ignored a byte-range request for {url}; the wheel metadata can "
                "only be read from an index that serves PEP 658 .metadata files or ranges."
            )
        return response.content

    def size(self, url: str) -> int:
        response = self._request("HEAD", url, {})
        length = response.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise IndexUnavailable(f"{_host(url)} gave no size for {url}.")
        return int(length)

    def _request(self, method: str, url: str, headers: dict[str, str]) -> requests.Response:
        problem = ""
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            try:
                response = self._session.request(
                    method,
                    url,
                    headers=headers,
                    timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
                    allow_redirects=True,
                )
            except requests.RequestException as error:
                problem = _short(error)
                continue
            if response.status_code in (200, 206):
                return response
            if response.status_code == 404:
                raise NotFound(f"{_host(url)} has no {url} (HTTP 404).")
            problem = f"HTTP {response.status_code} for {url}"
            if response.status_code not in _RETRYABLE_STATUS:
                break
        raise IndexUnavailable(
            f"{_host(url)} did not answer ({problem}). Check the network or proxy settings, or "
            "point the index option at a reachable mirror; nothing was changed."
        )


def _short(error: Exception) -> str:
    """The errno sentence of a connection error, not urllib3's nested repr."""
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", str(error))
    return f"{type(error).__name__}: {errno.group(0) if errno else str(error)[:200]}"


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


class RemoteFile(io.RawIOBase):
    """A read-only, seekable view of a remote file that fetches only the ranges read."""

    def __init__(self, getter: Getter, url: str) -> None:
        super().__init__()
        self._getter = getter
        self._url = url
        self._size = getter.size(url)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        anchor = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, anchor + offset)
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        data = self._getter.get_range(self._url, self._position, wanted)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)
