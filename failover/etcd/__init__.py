"""etcd v3 elector over the JSON gateway (``/v3/...``; etcd 3.4+) with httpx on trio.

Go ``concurrency.Election`` semantics (specs/failover.md §5.2):

1. grant a lease and keep it alive *during* the campaign (every ``renew_interval``, each RPC
   bounded by ``rpc_timeout``, members tried in turn);
2. create ``<prefix>/<lease-hex>`` (value: our identity) in a txn guarded by CreateRevision == 0;
3. the token is that key's create revision (cluster-wide, strictly monotonic, survives restarts);
4. wait until no key of the prefix has a lower create revision, watching only the predecessor;
5. while active, watch our own key for DELETE;
6. local deadline = send time of the last successful keepalive + TTL; step down at deadline - safety
   (the request left before the server refreshed the lease, so this is <= the server's expiry);
7. fenced write = txn guarded by CreateRevision(our key) == token;
8. resign = delete our key and revoke the lease.

A session (lease + key) that ends for any reason other than a watch hiccup of the active is
abandoned (best-effort delete + revoke) and the next campaign uses a new lease.  While etcd is
unreachable nobody is active (a CP choice; the bridge's replay window covers the outage).

Security (:class:`EtcdSecurity`, etcdctl's ``--cacert/--cert/--key/--user``): HTTPS with our CA
and an optional client certificate, and etcd's own authentication.  The gateway takes the token
of ``/v3/auth/authenticate`` in the ``Authorization`` header.  etcd's default *simple* tokens expire
after ``--auth-token-ttl`` (300 s) without an authorised request, and keepalives are not authorised:
an active that only renews holds an expired token when it next writes.  So a refused token means
log in again and retry once; tokens are kept per member (a JWT setup may differ per member).

One module per job: ``wire`` (pure: request bodies, response parsing, predecessor choice; unit-tested
without a server), ``security`` (TLS and auth settings), ``gateway`` (the HTTP client: members in
turn, tokens, watches) and ``elector`` (the backend itself, on :class:`failover.elector.ElectorCore`).
Import what you need from its module; this package module imports nothing.
"""
