"""One ``requests.Session`` per reading thread (a session is not safe to share between
threads), all closed together with the source that made them."""

from __future__ import annotations

import threading

import requests


class ThreadSessions:
    """:meth:`get` the calling thread's session; :meth:`close` every one (and ``extra``)."""

    def __init__(self, *extra: requests.Session) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[requests.Session] = list(extra)

    def get(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
