"""Numbers users tune, in one place (defaults of :class:`gsim_async.Client`)."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://gsim.io"
API_PREFIX = "/api/v1"

#: Whole-request deadline in seconds (connect + send + read), per attempt.
DEFAULT_TIMEOUT = 30.0
#: Deadline for opening a connection; failing here proves the request never left.
DEFAULT_CONNECT_TIMEOUT = 10.0

#: Retries after the first attempt; waiting out a 429 counts as one.
DEFAULT_MAX_RETRIES = 3
#: Exponential backoff with full jitter: sleep uniform(0, min(cap, base * 2**attempt)).
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_CAP = 8.0
#: Retry-After the server may ask for is honoured up to this many seconds.
DEFAULT_MAX_RETRY_AFTER = 60.0
#: What a 429 without Retry-After means, per the API documentation.
DEFAULT_RETRY_AFTER = 60.0

#: Seconds between poll rounds of the code watcher.
DEFAULT_POLL_INTERVAL = 2.0

#: Connection pool size of the aiohttp connector we create.
DEFAULT_CONNECTION_LIMIT = 100
DEFAULT_DNS_CACHE_TTL = 300

#: A response body larger than this is refused (bytes).
DEFAULT_MAX_RESPONSE_SIZE = 8 * 1024 * 1024

#: Cleanup (ban/cancel after a timeout or on leaving activation()) gets its own deadline,
#: long enough to wait out one default 429.
DEFAULT_CLEANUP_TIMEOUT = 90.0

#: Page size used by iterate() and the watcher's list polling (the API maximum).
MAX_PAGE_SIZE = 100
