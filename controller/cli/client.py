"""The CLI's HTTP client for the instructor API (the CLI never opens the database for reads)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from controller.credentials import Credentials

# The controller's largest page (controller/api/pagination.py): fewest round trips.
PAGE_LIMIT = 1000


class ClientError(Exception):
    """The controller refused a request or could not be reached; the message says which."""

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class ControllerClient:
    def __init__(self, credentials: Credentials, *, timeout: float = 30.0) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self._context = verifying_context(credentials.ca_file)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def get_all(self, path: str, key: str, *, at_most: int | None = None) -> list[Any]:
        """Every item of a paged list (``key`` of each page), following ``next``; the first ``at_most`` if given."""
        items, _ = self.get_pages(path, key, at_most=at_most)
        return items

    def get_pages(self, path: str, key: str, *, at_most: int | None = None) -> tuple[list[Any], dict[str, Any]]:
        """The items of every page and the first page's other fields (a batch's counts, say)."""
        items: list[Any] = []
        first: dict[str, Any] | None = None
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            limit = PAGE_LIMIT if at_most is None else max(1, min(PAGE_LIMIT, at_most - len(items)))
            query = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            body = self.get(path + ("&" if "?" in path else "?") + urllib.parse.urlencode(query))
            first = first if first is not None else {k: v for k, v in body.items() if k not in (key, "next")}
            items.extend(body[key])
            cursor = body.get("next")
            if not cursor or cursor in seen or (at_most is not None and len(items) >= at_most):
                return items, first
            seen.add(cursor)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body or {})

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return json.loads(self.raw(method, path, body) or b"{}")

    def download(self, path: str, *, timeout: float = 120.0) -> bytes:
        """A non-JSON answer's bytes (a diagnostics bundle); errors as for ``request``."""
        return self.raw("GET", path, None, accept="*/*", timeout=timeout)

    def raw(self, method: str, path: str, body: dict[str, Any] | None = None, *, accept: str = "application/json",
            timeout: float | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.credentials.url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.credentials.token}", "Content-Type": "application/json",
                     "Accept": accept},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=self._context) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise _from_http_error(exc) from None
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                trusted = self.credentials.ca_file or "the system's certificate authorities"
                raise ClientError(f"the controller at {self.credentials.url} is not who it claims to be: its "
                                  f"certificate does not verify against {trusted} ({reason.verify_message})") from None
            raise ClientError(f"cannot reach the controller at {self.credentials.url}: {reason}") from None


def verifying_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificates and host names checked, TLS 1.2+; only ``ca_file``'s CA when given."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _from_http_error(exc: urllib.error.HTTPError) -> ClientError:
    try:
        body = json.loads(exc.read())
        message = body.get("detail") or body.get("error") or str(exc)
        field = body.get("field")
    except (ValueError, AttributeError):
        message, field = f"HTTP {exc.code}", None
    return ClientError(f"{message} (HTTP {exc.code})", status=exc.code, field=field)
