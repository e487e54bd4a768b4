"""What `leadcal push` shares across CRMs: the HTTP client and the lines of a plan.

The client speaks JSON over HTTP with one Authorization header, retries with backoff on 429 and
5xx (Retry-After when given; HubSpot's ten-second window; never its daily limit, nor a create that
failed on the server), and ends every failure in one line carrying the tool's own message.
Credentials are only ever in the header, never in a message. `plan_line` words one change the
same way for every CRM: `+` create, `~` update, `=` unchanged, `-` remove, `!` skip, `>` publish.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.errors import LeadcalError

log = logging.getLogger(__name__)

RETRIED = {429, 500, 502, 503, 504}
TEN_SECONDS = 10.0
URL_VARIABLE = {"mautic": "MAUTIC_URL", "hubspot": "HUBSPOT_API_URL"}


class Client:
    """JSON over HTTP with one Authorization header, retries with backoff on 429/5xx, and one-line errors.

    `service` ("mautic", "hubspot") names the tool in messages and picks how its error bodies read."""

    def __init__(self, base_url: str, authorization: str, service: str = "mautic", retries: int = 4,
                 backoff: float = 0.5, timeout: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> None:
        parts = urllib.parse.urlsplit(base_url.rstrip("/"))
        variable = URL_VARIABLE[service]
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.username or parts.password:
            raise LeadcalError(f"{variable} must be http(s)://host[/path] without credentials in it "
                               "(they go in the environment variables named in docs/crm-exports.md)")
        self.base_url, self.service = base_url.rstrip("/"), service
        self._auth = authorization
        self.retries, self.backoff, self.timeout, self.sleep = retries, backoff, timeout, sleep

    @classmethod
    def basic(cls, base_url: str, username: str, password: str, **options: Any) -> "Client":
        """Mautic: HTTP Basic auth."""
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return cls(base_url, "Basic " + token, "mautic", **options)

    @classmethod
    def bearer(cls, base_url: str, token: str, **options: Any) -> "Client":
        """HubSpot: a private app's access token."""
        return cls(base_url, "Bearer " + token, "hubspot", **options)

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                idempotent: bool = True) -> dict[str, Any]:
        """The JSON object the tool answers (empty for an empty answer).

        `idempotent=False` (a create): a 5xx is not retried, since the tool may have done it
        before failing; a 429 is, as the tool refused the request before doing anything."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.base_url + path, data=data, method=method, headers={
                "Authorization": self._auth, "Accept": "application/json",
                **({"Content-Type": "application/json"} if data is not None else {})})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) checked
                    text = response.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as error:
                text = error.read().decode("utf-8", "replace")
                retried = error.code == 429 or (idempotent and error.code in RETRIED)
                if retried and attempt < self.retries and not _daily_limit(text):
                    wait = _retry_after(error.headers.get("Retry-After"), self.backoff * 2 ** attempt)
                    if _policy(text) == "TEN_SECONDLY_ROLLING":  # HubSpot's burst limit: its window is 10 s
                        wait = max(wait, TEN_SECONDS)
                    log.warning("push: %s %s answered %d; retrying in %.1f s", method, path, error.code, wait)
                    self.sleep(wait)
                    continue
                raise LeadcalError(_error_line(self.service, method, path, error.code, text)) from None
            except (urllib.error.URLError, TimeoutError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise LeadcalError(f"{self.service}: {method} {path}: cannot reach {self.base_url}: {reason}") from None
            except (ValueError, UnicodeError):  # a header http.client refuses; never echo it: it holds the credentials
                raise LeadcalError(f"{self.service}: {method} {path}: the credentials hold characters an HTTP header "
                                   "cannot carry (a line break or non-ASCII); check the environment variables") from None
            return _json_object(self.service, method, path, text)
        raise AssertionError("unreachable")  # the loop returns or raises


def _json_object(service: str, method: str, path: str, text: str) -> dict[str, Any]:
    """A successful answer's JSON object, or one line saying what came instead (a proxy's HTML page...)."""
    if not text.strip():
        return {}
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        shown = " ".join(text.split())[:120]
        raise LeadcalError(f"{service}: {method} {path} answered with something that is not a JSON object: {shown!r}")
    return answer


def _policy(text: str) -> str:
    """HubSpot's rate-limit policy named in a 429 body ("DAILY", "TEN_SECONDLY_ROLLING"), or ""."""
    try:
        answer = json.loads(text)
    except ValueError:
        return ""
    return str(answer.get("policyName", "")) if isinstance(answer, Mapping) else ""


def _daily_limit(text: str) -> bool:
    """A daily limit resets at midnight: retrying within seconds cannot help."""
    return _policy(text) == "DAILY"


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header is not None else default
    except ValueError:
        return default


def _error_line(service: str, method: str, path: str, status: int, text: str) -> str:
    """One line: which request, what status, and the tool's own message (its error body).

    Mautic: {"errors": [{"message": ...}]}; HubSpot: {"message": ..., "errors": [{"message", "in"}]}."""
    try:
        answer = json.loads(text)
        errors = [e for e in answer.get("errors") or [] if isinstance(e, Mapping)]
        parts = [f"{e['in']}: {e.get('message', '')}" if e.get("in") else str(e.get("message", "")) for e in errors]
        if service == "hubspot" and answer.get("message"):
            parts = [str(answer["message"])] + parts
        message = "; ".join(p for p in parts if p) or text[:200]
    except (ValueError, AttributeError):
        message = text[:200]
    message = " ".join(message.split())
    if status in (401, 403):
        hint = ("check MAUTIC_USERNAME / MAUTIC_PASSWORD and that the API and Basic auth are enabled in Mautic's "
                "configuration" if service == "mautic" else
                "check HUBSPOT_ACCESS_TOKEN and that its private app has the scopes in docs/crm-exports.md")
        return f"{service}: {method} {path} was refused ({status}): {hint} ({message})"
    if status == 429:
        return f"{service}: {method} {path}: rate limit reached ({message}); try again later"
    if status in (400, 422):
        return f"{service} refused {method} {path} ({status}): {message}"
    return f"{service}: {method} {path} answered {status}: {message}"


PLAN_MARKS = {"create": "+", "update": "~", "unchanged": "=", "remove": "-", "skip": "!", "publish": ">"}


def plan_line(action: str, subject: str, changed: tuple[str, ...] = (), detail: str = "") -> str:
    """One line of a push plan: "~ update group 'industry': 3 of 8 rules", "! skip ... (why)"."""
    shown = f": {', '.join(changed)}" if changed else f" ({detail})" if detail else ""
    return f"{PLAN_MARKS[action]} {action} {subject}{shown}"
