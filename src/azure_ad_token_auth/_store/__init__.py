"""The cross-process token store behind `shared_cache`.

Processes of one user on one host that use one identity for one set of scopes share one
token: the process whose token is due takes an OS file lock, reads the store, and calls
its credential only when nobody has renewed the token since it last looked; the others
find the renewed token there. The store trusts only what it verified (the whole path to
its directory, each file through its open descriptor, each record's key and token), and
a cache shares only under a key the library knows without reading any credential's
private state: the default credential it makes itself, or a name the caller gives.

One job per module: `_settings` (which directory), `_identity` (the key),
`_directory` (the trusted directory handle), `_names` (the store's file names),
`_records` (records and markers on disk), `_sweep` (the clean-up), `_lock` (the OS
lock), `_binding` (what the cache uses).
"""

from __future__ import annotations

from ._binding import FAULT_BACKOFF, SharedBinding, lock_wait, share
from ._directory import StoreFault
from ._identity import StoreKey
from ._records import CorruptRecordFault, LockBusyFault, TokenStore
from ._settings import ENV_VAR, default_directory, shared_cache_setting

__all__ = [
    "ENV_VAR",
    "FAULT_BACKOFF",
    "CorruptRecordFault",
    "LockBusyFault",
    "SharedBinding",
    "StoreFault",
    "StoreKey",
    "TokenStore",
    "default_directory",
    "lock_wait",
    "share",
    "shared_cache_setting",
]
