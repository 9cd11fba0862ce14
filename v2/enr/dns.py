"""EIP-1459 node lists in DNS (``enrtree://``): pure record parsing and verification, a bounded walk.

A tree is published under a domain: the apex TXT record is the signed root
``enrtree-root:v1 e=<enr-root> l=<link-root> seq=<n> sig=<base64url r‖s‖v>``; every other entry
lives at ``<base32(keccak256(text)[:16])>.<domain>`` and is a branch (``enrtree-branch:h1,h2,…``),
a leaf (``enr:…``, only below ``e=``) or a link to another tree (``enrtree://key@fqdn``, only below
``l=``).  The root signature authenticates the two subtree hashes, and each entry is checked
against the hash it was fetched by, so one verified root authenticates the whole tree
(waku-v2.md §14; ethereum/devp2p dnsdisc.md).

The walk takes an injectable ``lookup_txt(name) -> list[str]``; :func:`make_txt_lookup` builds
the real one on dnspython's *sync* resolver run in a worker thread (its async resolver needs
asyncio, and we run on trio).
"""

from __future__ import annotations

import base64
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import trio
from coincurve import PrivateKey, PublicKey

from v2.enr.enr import Enr, EnrError, b64url_decode, b64url_encode, keccak256, verify_signature
from v2.errors import V2Error

__all__ = [
    "Branch",
    "DnsDiscoveryError",
    "DnsLookupError",
    "EnrTreeUrl",
    "Entry",
    "Link",
    "Root",
    "TxtLookup",
    "WalkResult",
    "WalkStats",
    "make_tree",
    "make_txt_lookup",
    "parse_entry",
    "parse_root",
    "resolve_tree",
    "subdomain",
    "walk_tree",
]

log = logging.getLogger(__name__)

TxtLookup = Callable[[str], Awaitable[list[str]]]

# seq: at most 20 digits, a uint64 (go-ethereum p2p/dnsdisc/tree.go reads it into a uint); int() would
# refuse more than 4 300 digits with ValueError.
_ROOT_RE = re.compile(r"^enrtree-root:v1 e=([A-Z2-7]+) l=([A-Z2-7]+) seq=([0-9]{1,20}) sig=([A-Za-z0-9_-]+=*)$")
_HASH_RE = re.compile(r"^[A-Z2-7]{16,52}$")  # 10..32 bytes of hash; publishers use 16 (26 chars)
_MIN_HASH_BYTES = 10
_MAX_TXT = 4096  # generous: a real entry is < 512 bytes (one UDP answer)


class DnsDiscoveryError(V2Error):
    """A tree we cannot trust (bad URL, missing or badly signed root)."""


class DnsLookupError(DnsDiscoveryError):
    """A TXT lookup failed (timeout, SERVFAIL, no nameserver)."""


def _b32decode(text: str) -> bytes:
    text = text.upper()
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:
        raise DnsDiscoveryError(f"not base32: {text!r}") from None


def subdomain(txt: str) -> str:
    """The name an entry is published under: base32(keccak256(text)[:16]), no padding."""
    return base64.b32encode(keccak256(txt.encode())[:16]).decode().rstrip("=")


def _hash_matches(name: str, txt: str) -> bool:
    want = _b32decode(name)
    return len(want) >= _MIN_HASH_BYTES and keccak256(txt.encode()).startswith(want)


@dataclass(frozen=True, slots=True)
class EnrTreeUrl:
    public_key: bytes  # 33-byte compressed
    domain: str

    @classmethod
    def parse(cls, url: str) -> EnrTreeUrl:
        m = re.fullmatch(r"enrtree://([A-Za-z2-7]+)@([A-Za-z0-9._-]+?)\.?", url.strip())
        if not m:
            raise DnsDiscoveryError(f"not an enrtree:// URL: {url!r}")
        key = _b32decode(m.group(1))
        try:
            PublicKey(key)
        except (ValueError, TypeError):
            raise DnsDiscoveryError("enrtree URL key is not a secp256k1 public key") from None
        if len(key) != 33:
            raise DnsDiscoveryError("enrtree URL key must be 33 bytes compressed")
        return cls(key, m.group(2).lower())

    def __str__(self) -> str:
        return f"enrtree://{base64.b32encode(self.public_key).decode().rstrip('=')}@{self.domain}"


@dataclass(frozen=True, slots=True)
class Root:
    enr_root: str
    link_root: str
    seq: int
    signature: bytes
    signed_text: str  # the part the signature covers (before " sig=")

    def verify(self, public_key: bytes) -> bool:
        # go-ethereum and js-waku verify r‖s only (the recovery id byte is not checked).
        return len(self.signature) in (64, 65) and verify_signature(
            public_key, self.signature[:64], keccak256(self.signed_text.encode()))


@dataclass(frozen=True, slots=True)
class Branch:
    hashes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Link:
    url: EnrTreeUrl


Entry = Branch | Link | Enr


def parse_root(txt: str) -> Root:
    m = _ROOT_RE.match(txt.strip())
    if not m:
        raise DnsDiscoveryError(f"not an enrtree-root:v1 record: {txt[:80]!r}")
    try:
        sig = b64url_decode(m.group(4))
    except EnrError:
        raise DnsDiscoveryError("root signature is not base64url") from None
    seq = int(m.group(3))
    if seq >= 1 << 64:
        raise DnsDiscoveryError(f"root seq {seq} is not a uint64")
    signed = txt.strip().split(" sig=", 1)[0]
    return Root(m.group(1), m.group(2), seq, sig, signed)


def parse_entry(txt: str) -> Entry:
    """A non-root entry: branch, leaf (verified ENR) or link."""
    txt = txt.strip()
    if txt.startswith("enrtree-branch:"):
        body = txt[len("enrtree-branch:"):]
        hashes = tuple(h for h in body.split(",") if h) if body else ()
        if not all(_HASH_RE.match(h) for h in hashes):
            raise DnsDiscoveryError("bad hash in branch")
        return Branch(hashes)
    if txt.startswith("enr:"):
        try:
            return Enr.from_text(txt)
        except EnrError as exc:
            raise DnsDiscoveryError(f"bad leaf: {exc}") from None
    if txt.startswith("enrtree://"):
        return Link(EnrTreeUrl.parse(txt))
    raise DnsDiscoveryError(f"unknown entry type: {txt[:40]!r}")


@dataclass(slots=True)
class WalkStats:
    lookups: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclass(frozen=True, slots=True)
class WalkResult:
    enrs: tuple[Enr, ...]
    trees: tuple[str, ...]  # domains whose root verified
    stats: WalkStats


async def _lookup(lookup_txt: TxtLookup, name: str, timeout: float, stats: WalkStats) -> list[str]:
    stats.lookups += 1
    with trio.move_on_after(timeout):
        records = await lookup_txt(name)
        return [r for r in records if len(r) <= _MAX_TXT]
    raise DnsLookupError(f"TXT {name}: no answer within {timeout} s")


async def _fetch_entry(lookup_txt: TxtLookup, h: str, domain: str, timeout: float, stats: WalkStats) -> Entry | None:
    try:
        records = await _lookup(lookup_txt, f"{h}.{domain}", timeout, stats)
    except DnsLookupError:
        stats.error("lookup")
        return None
    for txt in records:
        if _hash_matches(h, txt):
            try:
                return parse_entry(txt)
            except DnsDiscoveryError:
                stats.error("bad_entry")
                return None
    stats.error("hash_mismatch" if records else "missing")
    return None


async def _walk_subtree(lookup_txt: TxtLookup, root_hash: str, domain: str, *, leaves: str, max_depth: int,
                        budget: list[int], timeout: float, stats: WalkStats) -> list[Entry]:
    """Breadth-first over one subtree; ``leaves`` is "enr" or "link" (the other kind is refused there)."""
    found: list[Entry] = []
    seen: set[str] = set()
    queue: deque[tuple[str, int]] = deque([(root_hash, 0)])
    while queue:
        h, depth = queue.popleft()
        if h in seen:
            continue
        seen.add(h)
        if budget[0] <= 0:
            stats.error("max_records")
            break
        budget[0] -= 1
        entry = await _fetch_entry(lookup_txt, h, domain, timeout, stats)
        if isinstance(entry, Branch):
            if depth >= max_depth:
                stats.error("max_depth")
                continue
            queue.extend((c, depth + 1) for c in entry.hashes)
        elif (isinstance(entry, Enr) and leaves == "enr") or (isinstance(entry, Link) and leaves == "link"):
            found.append(entry)
        elif entry is not None:
            stats.error("misplaced_entry")  # a link below e= or a leaf below l= (dnsdisc.md)
    return found


async def walk_tree(url: str | EnrTreeUrl, lookup_txt: TxtLookup, *, max_depth: int = 8, max_records: int = 2000,
                    max_trees: int = 8, follow_links: bool = True, timeout: float = 5.0) -> WalkResult:
    """Resolve a tree (and, if ``follow_links``, the trees it links to) into verified ENRs.

    Bounds: ``max_depth`` branch levels per subtree, ``max_records`` entry lookups in total,
    ``max_trees`` trees.  Raises :class:`DnsDiscoveryError` only if the *first* tree's root is
    missing or badly signed; failures further in are counted in ``stats`` and skipped.
    """
    first = url if isinstance(url, EnrTreeUrl) else EnrTreeUrl.parse(url)
    stats = WalkStats()
    budget = [max_records]
    enrs: dict[bytes, Enr] = {}
    trees: list[str] = []
    pending: deque[EnrTreeUrl] = deque([first])
    visited: set[EnrTreeUrl] = set()
    while pending and len(visited) < max_trees:
        tree = pending.popleft()
        if tree in visited:
            continue
        visited.add(tree)
        try:
            root = await _resolve_root(lookup_txt, tree, timeout, stats)
        except DnsDiscoveryError as exc:
            if tree == first:
                raise
            stats.error("linked_root")
            log.info("dns discovery: skipping linked tree %s: %s", tree, exc)
            continue
        trees.append(tree.domain)
        for e in await _walk_subtree(lookup_txt, root.enr_root, tree.domain, leaves="enr", max_depth=max_depth,
                                     budget=budget, timeout=timeout, stats=stats):
            assert isinstance(e, Enr)
            old = enrs.get(e.node_id)
            if old is None or e.seq > old.seq:
                enrs[e.node_id] = e
        if follow_links:
            for link in await _walk_subtree(lookup_txt, root.link_root, tree.domain, leaves="link",
                                            max_depth=max_depth, budget=budget, timeout=timeout, stats=stats):
                assert isinstance(link, Link)
                pending.append(link.url)
    return WalkResult(tuple(enrs.values()), tuple(trees), stats)


async def resolve_tree(url: str, lookup_txt: TxtLookup, **bounds: int | float | bool) -> list[Enr]:
    """:func:`walk_tree`, returning only the ENRs."""
    return list((await walk_tree(url, lookup_txt, **bounds)).enrs)  # type: ignore[arg-type]


async def _resolve_root(lookup_txt: TxtLookup, tree: EnrTreeUrl, timeout: float, stats: WalkStats) -> Root:
    records = await _lookup(lookup_txt, tree.domain, timeout, stats)
    roots = [r for r in records if r.startswith("enrtree-root:")]
    if not roots:
        raise DnsDiscoveryError(f"no enrtree-root record at {tree.domain}")
    for txt in roots:
        root = parse_root(txt)
        if root.verify(tree.public_key):
            return root
    raise DnsDiscoveryError(f"root at {tree.domain} is not signed by the URL's key")


def make_txt_lookup(nameservers: Sequence[str] | None = None, *, port: int = 53,
                    timeout: float = 5.0) -> TxtLookup:
    """A real TXT lookup on dnspython's sync resolver, run in a worker thread.

    ``nameservers=None`` uses the system configuration (/etc/resolv.conf).
    """
    import dns.exception
    import dns.resolver

    try:
        resolver = dns.resolver.Resolver(configure=nameservers is None)
    except dns.exception.DNSException as exc:  # no /etc/resolv.conf: fail the lookups, not the node
        problem = f"no resolver configuration: {exc}"

        async def unconfigured(name: str) -> list[str]:
            raise DnsLookupError(f"TXT {name}: {problem}")

        return unconfigured
    if nameservers is not None:
        resolver.nameservers = list(nameservers)
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout

    def query(name: str) -> list[str]:
        try:
            answer = resolver.resolve(name, "TXT", search=False, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise DnsLookupError(f"TXT {name}: {type(exc).__name__}") from None
        out = []
        for rdata in answer:
            try:  # a TXT record may be split into several <=255-byte strings: join them
                out.append(b"".join(rdata.strings).decode("ascii"))
            except UnicodeDecodeError:
                continue
        return out

    async def lookup(name: str) -> list[str]:
        # The resolver's own lifetime bounds the thread; abandoning it on cancel keeps trio responsive.
        return await trio.to_thread.run_sync(query, name, abandon_on_cancel=True)  # type: ignore[call-arg]

    return lookup


def make_tree(private_key: bytes, domain: str, enrs: Iterable[Enr], *, links: Iterable[str] = (), seq: int = 1,
              max_children: int = 13) -> tuple[str, dict[str, str]]:
    """Build a signed tree: returns (``enrtree://`` URL, {subdomain or "@": TXT text}).

    ``max_children`` hashes per branch keeps each branch under the 512-byte UDP answer limit.
    """
    zone: dict[str, str] = {}

    def subtree(texts: list[str]) -> str:
        if len(texts) == 1:
            name = subdomain(texts[0])
            zone[name] = texts[0]
            return name
        step = -(-len(texts) // max_children)  # ceil: at most max_children children per branch
        txt = "enrtree-branch:" + ",".join(subtree(texts[i:i + step]) for i in range(0, len(texts), step))
        name = subdomain(txt)
        zone[name] = txt
        return name

    def top(texts: list[str]) -> str:
        if not texts:
            zone[subdomain("enrtree-branch:")] = "enrtree-branch:"
            return subdomain("enrtree-branch:")
        return subtree(texts)

    e_root = top([e.to_text() for e in enrs])
    l_root = top(list(links))
    sk = PrivateKey(private_key)
    signed = f"enrtree-root:v1 e={e_root} l={l_root} seq={seq}"
    sig = sk.sign_recoverable(keccak256(signed.encode()), hasher=None)
    zone["@"] = f"{signed} sig={b64url_encode(sig)}"
    url = EnrTreeUrl(sk.public_key.format(compressed=True), domain.lower())
    return str(url), zone
