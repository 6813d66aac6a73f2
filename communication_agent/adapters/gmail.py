"""Gmail over its REST API (v1), with httpx.

- First sync: `messages.list` over the configured query and window, newest first, paged; the
  checkpoint is the mailbox's `historyId` read *before* listing, so anything arriving meanwhile
  is picked up by the next incremental sync.
- Incremental sync: `history.list` (messageAdded) from the stored `historyId`; a 404 means the
  id expired, reported as `CheckpointExpiredError` (the sync then resyncs fully).
- Fetching: `messages.get?format=raw`, many at once through Google's batch endpoint (see
  `gmail_batch`); the SENT label marks mail the mailbox sent. Inner calls are retried one by
  one: a 429 for one message does not refetch the others.
- Rate limits (429, 403 rateLimitExceeded/userRateLimitExceeded) and 5xx are retried with
  backoff and `Retry-After`; a 401 refreshes the access token once; OAuth `invalid_grant`
  becomes `ReauthorisationRequiredError`.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from communication_agent.adapters.gmail_batch import (
    ADVISED_CALLS,
    BatchFormatError,
    BatchItem,
    decode_response,
    encode_request,
)
from communication_agent.adapters.google_oauth import AccessTokens
from communication_agent.adapters.http_retry import RetryPolicy, Sleep, default_sleep
from communication_agent.adapters.mail_provider import (
    ChangePage,
    CheckpointExpiredError,
    FetchedMessage,
    MailboxProfile,
    MessageFetchError,
    MessageGoneError,
    MessageRef,
    ProviderError,
    ProviderUnavailableError,
    ReauthorisationRequiredError,
)
from communication_agent.adapters.tls import client_tls

SKIPPED_LABELS = {"DRAFT", "SPAM", "TRASH", "CHAT", "CATEGORY_PROMOTIONS", "CATEGORY_SOCIAL"}
RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}


class _NotFoundError(ProviderError):
    pass


class GmailProvider:
    def __init__(
        self,
        *,
        api_url: str,
        tokens: AccessTokens,
        query: str,
        window_days: int,
        page_size: int = 500,
        retry: RetryPolicy | None = None,
        sleep: Sleep = default_sleep,
        timeout: float = 30.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        # The discovery document's batchPath: /batch/gmail/v1 beside /gmail/v1.
        parts = urlsplit(self.api_url)
        self.api_path = parts.path
        self.batch_url = f"{parts.scheme}://{parts.netloc}/batch{parts.path}"
        self.tokens = tokens
        self.query = query
        self.window_days = window_days
        self.page_size = page_size
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.http = httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=16), verify=client_tls()
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def profile(self) -> MailboxProfile:
        body = await self._call("GET", "/users/me/profile")
        return MailboxProfile(
            address=str(body["emailAddress"]).lower(), checkpoint=str(body["historyId"])
        )

    async def list_changes(self, checkpoint: str | None, page_token: str | None) -> ChangePage:
        if checkpoint is None:
            return await self._list_recent(page_token)
        return await self._list_history(checkpoint, page_token)

    async def _list_recent(self, page_token: str | None) -> ChangePage:
        state = (
            json.loads(page_token) if page_token else {"history": (await self.profile()).checkpoint}
        )
        params: dict[str, Any] = {
            "q": f"({self.query}) newer_than:{self.window_days}d",
            "maxResults": self.page_size,
        }
        if state.get("gmail"):
            params["pageToken"] = state["gmail"]
        body = await self._call("GET", "/users/me/messages", params=params)
        refs = [MessageRef(m["id"], m.get("threadId")) for m in body.get("messages", [])]
        next_token = body.get("nextPageToken")
        ours = (
            json.dumps({"history": state["history"], "gmail": next_token}) if next_token else None
        )
        return ChangePage(refs=refs, next_page_token=ours, checkpoint=state["history"])

    async def _list_history(self, checkpoint: str, page_token: str | None) -> ChangePage:
        params: dict[str, Any] = {
            "startHistoryId": checkpoint,
            "historyTypes": "messageAdded",
            "maxResults": self.page_size,
        }
        if page_token:
            params["pageToken"] = page_token
        try:
            body = await self._call("GET", "/users/me/history", params=params)
        except _NotFoundError as exc:
            raise CheckpointExpiredError(f"history id {checkpoint} has expired") from exc
        refs: list[MessageRef] = []
        seen: set[str] = set()
        for record in body.get("history", []):
            for added in record.get("messagesAdded", []):
                message = added.get("message", {})
                if message.get("id") in seen or SKIPPED_LABELS & set(message.get("labelIds", [])):
                    continue
                seen.add(message["id"])
                refs.append(MessageRef(message["id"], message.get("threadId")))
        return ChangePage(
            refs=refs, next_page_token=body.get("nextPageToken"), checkpoint=str(body["historyId"])
        )

    async def fetch_many(self, refs: list[MessageRef]) -> list[FetchedMessage | MessageFetchError]:
        """Fetch in batches of `ADVISED_CALLS`; one result per ref, in order."""
        results: list[FetchedMessage | MessageFetchError] = []
        for start in range(0, len(refs), ADVISED_CALLS):
            results += await self._fetch_batch(refs[start : start + ADVISED_CALLS])
        return results

    async def _fetch_batch(
        self, refs: list[MessageRef]
    ) -> list[FetchedMessage | MessageFetchError]:
        pending = dict(enumerate(refs))
        done: dict[int, FetchedMessage | MessageFetchError] = {}
        refreshed = False
        last = "no attempt made"
        for attempt in range(self.retry.attempts):
            if not pending:
                break
            order = list(pending)
            items, problem, hint = await self._post_batch([pending[i] for i in order], attempt)
            if problem:
                last = problem
            unauthorised = problem == "HTTP 401"
            for position, index in enumerate(order):
                item = items.get(position)
                if item is None:
                    continue  # missing from the response (or the whole batch failed): retry
                outcome = _batch_outcome(pending[index], item)
                if outcome is None:
                    unauthorised |= item.status == 401
                    last = f"HTTP {item.status} {_item_reason(item)}".strip()
                    hint = _later(hint, self.retry.delay_for(item.headers, attempt))
                    continue
                done[index] = outcome
                del pending[index]
            if not pending:
                break
            if unauthorised:
                if refreshed:
                    raise ReauthorisationRequiredError(
                        "Gmail refused a freshly refreshed access token"
                    )
                refreshed = True
                await self.tokens.current(self.http, force_refresh=True)
                continue
            await self.sleep(hint if hint is not None else self.retry.backoff(attempt))
        for index, ref in pending.items():
            done[index] = MessageFetchError(
                f"message {ref.provider_message_id}: Gmail did not answer after "
                f"{self.retry.attempts} attempts ({last})"
            )
        return [done[i] for i in range(len(refs))]

    async def _post_batch(
        self, refs: list[MessageRef], attempt: int
    ) -> tuple[dict[int, BatchItem], str | None, float | None]:
        """One batch request: the inner responses, or what went wrong with the whole and how
        long the server asked us to wait."""
        body, content_type = encode_request(
            [f"{self.api_path}/users/me/messages/{r.provider_message_id}?format=raw" for r in refs]
        )
        token = await self.tokens.current(self.http, force_refresh=False)
        try:
            response = await self.http.post(
                self.batch_url,
                content=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
            )
        except httpx.TimeoutException:
            return {}, "timed out", None
        except httpx.TransportError as exc:
            return {}, f"connection failed ({type(exc).__name__})", None
        if response.status_code != 200:
            problem = f"HTTP {response.status_code} {_error_reason(response)}".strip()
            if response.status_code == 401:
                return {}, "HTTP 401", None
            if not _retryable(response.status_code, _error_reason(response)):
                raise ProviderError(f"Gmail answered {problem}: {_error_message(response)}")
            return {}, problem, self.retry.delay_for(response.headers, attempt)
        try:
            items = decode_response(
                response.headers.get("content-type", ""), response.content, len(refs)
            )
        except BatchFormatError as exc:
            return {}, str(exc), None
        return items, None, None

    async def find_sent(self, message_id_header: str) -> MessageRef | None:
        """Gmail search `rfc822msgid:` finds a message by its Message-ID header."""
        body = await self._call(
            "GET",
            "/users/me/messages",
            params={"q": f"in:sent rfc822msgid:{message_id_header.strip('<>')}", "maxResults": 1},
        )
        found = body.get("messages") or []
        if not found:
            return None
        return MessageRef(str(found[0]["id"]), found[0].get("threadId"))

    async def send(self, raw: bytes, thread_id: str | None) -> MessageRef:
        payload: dict[str, Any] = {"raw": base64.urlsafe_b64encode(raw).decode()}
        if thread_id:
            payload["threadId"] = thread_id
        body = await self._call(
            "POST", "/users/me/messages/send", json_body=payload, idempotent=False
        )
        return MessageRef(str(body["id"]), body.get("threadId"))

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """One API call with retries; see the module docstring for the policy.

        A call that is not `idempotent` (sending) is never retried here, except once after a
        token refresh on 401: after a timeout, a dropped connection or a 5xx the message may
        have been sent, so the caller must look before trying again (`find_sent`); rate limits
        come back with their Retry-After, for the caller to schedule. Either way it gets
        `ProviderUnavailableError` at once, and a send takes one request's time."""
        refreshed = False
        last = "no attempt made"
        for attempt in range(self.retry.attempts):
            token = await self.tokens.current(self.http, force_refresh=False)
            try:
                response = await self.http.request(
                    method,
                    self.api_url + path,
                    params=params,
                    json=json_body,
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.TimeoutException as exc:
                last = "timed out"
                if not idempotent:
                    raise ProviderUnavailableError(f"Gmail {last}; it may have sent") from exc
                await self.sleep(self.retry.backoff(attempt))
                continue
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__})"
                if not idempotent:
                    raise ProviderUnavailableError(f"Gmail {last}; it may have sent") from exc
                await self.sleep(self.retry.backoff(attempt))
                continue
            if not idempotent and response.status_code >= 500:
                raise ProviderUnavailableError(
                    f"Gmail answered HTTP {response.status_code}; the message may have been sent"
                )
            if response.status_code == 200:
                return _json(response)
            reason = _error_reason(response)
            last = f"HTTP {response.status_code} {reason}".strip()
            if response.status_code == 401 and not refreshed:
                refreshed = True
                await self.tokens.current(self.http, force_refresh=True)
                continue
            if response.status_code == 401:
                raise ReauthorisationRequiredError("Gmail refused a freshly refreshed access token")
            if response.status_code == 404:
                raise _NotFoundError(last)
            if _retryable(response.status_code, reason):
                if not idempotent:  # do not hold a sender's lease through Retry-After waits
                    raise ProviderUnavailableError(
                        f"Gmail answered {last}; try again later",
                        retry_after=self.retry.delay_for(response.headers, attempt),
                    )
                await self.sleep(self.retry.delay_for(response.headers, attempt))
                continue
            raise ProviderError(f"Gmail answered {last}: {_error_message(response)}")
        raise ProviderUnavailableError(
            f"Gmail did not answer after {self.retry.attempts} attempts ({last})"
        )


def _fetched(ref: MessageRef, body: dict[str, Any]) -> FetchedMessage:
    raw_text = str(body.get("raw") or "")
    if not raw_text.strip():  # a cut-off answer: fetch it again next run, never store it empty
        raise MessageFetchError(f"message {ref.provider_message_id}: Gmail sent no raw content")
    try:
        raw = base64.urlsafe_b64decode(raw_text + "=" * (-len(raw_text) % 4))
    except ValueError as exc:
        raise MessageFetchError(f"message {ref.provider_message_id}: undecodable raw data") from exc
    labels = list(body.get("labelIds", []))
    return FetchedMessage(
        ref=MessageRef(ref.provider_message_id, body.get("threadId") or ref.thread_id),
        raw=raw,
        received_at=_from_millis(body.get("internalDate")),
        sent_by_mailbox="SENT" in labels,
        labels=labels,
    )


def _batch_outcome(ref: MessageRef, item: BatchItem) -> FetchedMessage | MessageFetchError | None:
    """A finished call's result, or None when it is worth retrying (rate limit, 5xx, 401)."""
    if item.status == 200:
        try:
            return _fetched(ref, item.body)
        except MessageFetchError as exc:
            return exc
    if item.status == 404:
        return MessageGoneError(f"message {ref.provider_message_id} no longer exists")
    if item.status == 401 or _retryable(item.status, _item_reason(item)):
        return None
    error = item.body.get("error")
    detail = error if isinstance(error, dict) else {}
    return MessageFetchError(
        f"message {ref.provider_message_id}: Gmail answered HTTP {item.status} "
        f"{_item_reason(item)}: {detail.get('message', '')}".rstrip(": ")
    )


def _item_reason(item: BatchItem) -> str:
    error = item.body.get("error")
    errors = error.get("errors") if isinstance(error, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("reason", ""))
    return ""


def _later(current: float | None, candidate: float) -> float:
    return candidate if current is None else max(current, candidate)


def _retryable(status: int, reason: str) -> bool:
    return status == 429 or status >= 500 or (status == 403 and reason in RATE_LIMIT_REASONS)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise ProviderUnavailableError("Gmail answered with invalid JSON") from exc
    if not isinstance(body, dict):
        raise ProviderUnavailableError("Gmail answered with an unexpected JSON shape")
    return body


def _error_detail(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _error_reason(response: httpx.Response) -> str:
    errors = _error_detail(response).get("errors") or [{}]
    return str(errors[0].get("reason", "")) if isinstance(errors, list) and errors else ""


def _error_message(response: httpx.Response) -> str:
    return str(_error_detail(response).get("message", response.reason_phrase))


def _from_millis(value: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(value)) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
