"""Every number the SDK tunes, in one place.

The first group are the defaults of ``gsim_async.Client``'s arguments; the rest
are internal tunings that used to hide in the modules that use them. Each says why
it has its value (docs/architecture.md explains the rules behind them).
"""

from __future__ import annotations

DEFAULT_BASE_URL = "https://gsim.io"
API_PREFIX = "/api/v1"

# -- Client defaults ------------------------------------------------------------------

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

#: How long a server may still be working on a purchase whose answer was lost
#: (seconds from sending it). Reconciliation looks for the order until then, and lists
#: once more after it, before concluding that nothing was bought. A proxy in front of
#: a slow upstream gives up while the upstream goes on (nginx waits 60 s by default);
#: the client uses at least twice its own request timeout.
DEFAULT_RECONCILE_WINDOW = 60.0

# -- Cleanup --------------------------------------------------------------------------

#: A refund (ban/cancel after a timeout, or on leaving activation()) is never given up
#: while the client is open; the caller leaving an activation() block waits for it this
#: long (beyond any pause the server imposes), and aclose() waits this long for the
#: refunds still under way before leaving them to the journal.
CLEANUP_TIMEOUT = 30.0
#: The longest pause between two tries of a failed refund (they start at the poll
#: interval and double).
REFUND_BACKOFF_CAP = 10.0
#: After its timeout, a wait gives the refund this long (beyond any 429 pause under
#: way) before handing CodeTimeoutError back with the refund still finishing.
CLEANUP_GRACE = 5.0
#: Retries of one cleanup request (429s waited out, failures tried again); settle()
#: then tries again itself, for as long as the client is open.
CLEANUP_RETRIES = 1000

# -- Crash safety (the journal) -------------------------------------------------------

#: An earlier run's activation whose block died with it is refunded this long after the
#: journal is opened again: time for the program to take it back (orders.recovered()).
RECOVERY_GRACE = 10.0
#: An earlier run's order bought by create() is refunded this long before it expires.
RECOVERY_EXPIRY_MARGIN = 60.0

# -- Waiting --------------------------------------------------------------------------

#: Page size used by iterate() and the watcher's list polling (the API maximum).
MAX_PAGE_SIZE = 100
#: Concurrent single-order GETs the watcher keeps in flight.
FETCH_CONCURRENCY = 16
#: An order without ``expires_at``: the API documents about 20 minutes from purchase.
ORDER_LIFETIME = 20 * 60.0
#: Concurrent cancels of ``orders.cancel_stale()``.
SWEEP_CONCURRENCY = 8

# -- Ownership and clocks -------------------------------------------------------------

#: Ids of orders and rentals this client bought are remembered this long (seconds):
#: well past an order's life, and past any reconciliation window.
HOLD_FOR = 3600.0
#: Until the server's timestamps have been compared with our own purchases, they may
#: be this far (seconds) from the Date header's clock, and it from ours.
CLOCK_TOLERANCE = 600.0
#: Seconds of slack on a calibrated clock (timestamps are truncated to milliseconds,
#: and a server may stamp an order a little before it finishes the request).
CLOCK_SLACK = 0.5
#: Evidence of another buyer on the key is kept this long (seconds) after it was seen.
FOREIGN_BUYER_MEMORY = 3600.0

# -- Pacing (see docs/guides/rate-limits.md) ---------------------------------------------------

#: Requests per second before the client has met any limit, and the burst it starts
#: with: a client never fires a burst it has not tried before (slow start).
INITIAL_RATE = 10.0
#: While the limit is unknown, each accepted response raises the rate by this much
#: (req/s), so the rate grows by about half each second while it is the bottleneck.
SLOW_START_STEP = 0.5
#: Past this rate without a 429, pacing stops: the server shows no limit worth keeping.
UNPACED_ABOVE = 5000.0
#: A rate limiter's burst, in seconds of its rate, assumed when estimating the limit
#: from the first 429 (token buckets of "N per second" hold about one second's worth).
ASSUMED_BURST = 1.0
#: Fraction of the estimated (or advertised) limit the client settles at.
SETTLE_FRACTION = 0.95
#: A learnt rate is probed upward by this factor ...
PROBE_STEP = 1.05
#: ... after this many times the last pause without a 429 (and at least PROBE_MIN s).
PROBE_AFTER_PAUSES = 20.0
PROBE_MIN = 30.0
#: The lowest rate pacing ever falls to (requests/s).
MIN_RATE = 0.2
#: Seconds of accepted-response history kept to estimate a limit.
RATE_HISTORY = 120.0
#: Seconds of a fleet gate's history below which a 429 does not estimate the limit from
#: it (a gate Redis lost and a member restored): the rate the fleet ran at is used.
FLEET_MIN_HISTORY = 10.0
