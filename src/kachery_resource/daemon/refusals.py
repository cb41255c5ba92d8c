"""What the proxy's close codes mean to a daemon it refuses, and what to do about each
(the proxy's side: :mod:`kachery_resource.proxy.daemon_socket`)."""

from __future__ import annotations

CLOSE_UNAUTHORIZED, CLOSE_NAME_TAKEN, CLOSE_ZONE, CLOSE_REPLACED = 4001, 4002, 4003, 4009

#: what to check when the proxy closes instead of acknowledging, by close code
REFUSAL_HINTS = {
    4001: "the proxy did not accept proxySecret: it must equal the proxy's PROXY_SECRET (or be "
          "the token issued for this resource name); fix it with `kachery-resource init`",
    4002: "another daemon already serves this resource name on the proxy: stop it, or choose "
          "another name with `kachery-resource init` (a per-resource token from the proxy's "
          "admin, as proxySecret, takes the name over)",
    4003: "the proxy serves another zone: check kacheryZone in the config and KACHERY_ZONE",
    4004: "the proxy could not take the daemon, for the reason given; the daemon keeps trying "
          "(if the reason is about the message format, upgrade the older of proxy and daemon)",
    4008: "the proxy got no initialize in time (a slow or congested link); the daemon keeps trying",
    4009: "two daemons serve this resource: stop the other one (`kachery-resource status` "
          "there), or give each its own resource name",
    0: "check the resource name, proxySecret, zone, and that no other daemon serves this name",
}
