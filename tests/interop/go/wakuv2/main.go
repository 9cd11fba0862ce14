// Command wakuv2 runs one go-waku v0.10.0 node (waku/v2/node) for the interop tests and drives it
// with JSON lines: the test writes commands on stdin and reads replies and events on stdout; logs
// go to stderr; the program exits when stdin closes.  Several instances may run on one host: each
// takes its own -host/-port (port 0 = any free port; the ready event says which).
//
// Flags: -host 127.0.0.1, -port 0 (TCP), -ws-port -1 (WebSocket off; 0 = any port), -nodekey
// <hex secp256k1 key>, -cluster-id 0, -shards "32,33" (static shards of -cluster-id),
// -pubsub-topics "/waku/2/rs/1/3,..." (any pubsub topics), -relay true, -store (legacy store
// server, sqlite in memory), -filter (filter full node), -lightpush (legacy lightpush server),
// -peer-exchange (px server), -max-msg-size 153600, -discv5-port 0 (UDP; needs a fixed -port),
// -discv5-bootnodes "enr:...,enr:...", -log-level warn.
//
// Bytes (payload, meta, hashes, cursors) are plain lowercase hex, as in the js harnesses; a "0x"
// prefix is accepted on input.  Timestamps are int64 nanoseconds.
//
// On start:  {"event":"ready","peer_id":...,"multiaddrs":[...],"enr":"enr:..."}
// Commands:  {"id":n,"cmd":<name>, ...params}; reply {"id":n,"ok":true,...} or {"id":n,"ok":false,"error":...}
//
//	info                                                     -> peer_id, multiaddrs, enr, protocols
//	connect {multiaddr}                                      -> peer_id
//	disconnect {peer_id}
//	peers                                                    -> peers [{peer_id, connected, protocols, addrs}]
//	subscribe {pubsub_topic?, content_topics?}               -> pubsub_topic (relay; the whole pubsub
//	    topic is subscribed once, "" = derived from the first content topic by autosharding)
//	publish {pubsub_topic?, content_topic, payload, timestamp?, meta?, version?, ephemeral?} -> hash
//	publish_many {pubsub_topic, content_topic, count, size, rate?, stamp?, first_seq?, hashes?, version?}
//	    -> hashes, seconds, start_ns, end_ns, published (random payloads; rate 0 = as fast as relay
//	    takes them; stamp: the payload starts "wbsb" ‖ seq (8 bytes) ‖ send time ns (8 bytes), seq
//	    from first_seq; hashes false: no hash list in the reply)
//	relay_stats {mute?, reset?, late_ms?} -> received, doubled, first_ns, last_ns, stamped,
//	    latency_ms {p50, p99, max}, late (what relay delivered from other nodes since the last reset:
//	    distinct hashes, arrival times, and the latency of stamped payloads, late = over late_ms;
//	    mute true stops the per-message events, false resumes them; reset clears after the reply)
//	lightpush {peer, pubsub_topic?, content_topic, payload, timestamp?, meta?}  -> hash (legacy 2.0.0-beta1)
//	filter_subscribe {peer, pubsub_topic, content_topics}    (pushes arrive as message events, via=filter)
//	filter_ping {peer}        filter_unsubscribe {peer, pubsub_topic, content_topics}
//	store_query {peer, pubsub_topic?, content_topics?, hashes?, time_start?, time_end?, forward?,
//	    page_limit?, cursor?, include_data?, max_pages?} -> pages [{hashes, messages, cursor}] (store v3 client)
//	legacy_store_query {peer, pubsub_topic, content_topics?, start_time?, end_time?, forward?,
//	    page_size?, cursor?, max_pages?} -> pages [{messages, cursor}]    (store 2.0.0-beta4 client;
//	    cursor as a reply gives it: {digest, receiver_time, sender_time, pubsub_topic})
//	px_request {peer, num_peers}                             -> ok (discovered peers show up in peers)
//
// "peer" is a full multiaddr with /p2p/<id>; it is dialled first if not connected.
// Events:
//
//	message {via: relay|filter, pubsub_topic, hash, content_topic, payload, timestamp, meta, version,
//	    own}  (own: this program published it; go-waku delivers own publishes to its subscribers)
//	peer {peer_id, connected, protocols}
//
// stdout is written by one goroutine from a large buffered channel, so go-waku's callbacks never
// wait on the test's reader.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	_ "github.com/mattn/go-sqlite3"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/waku-org/go-waku/waku/persistence"
	"github.com/waku-org/go-waku/waku/persistence/sqlite"
	"github.com/waku-org/go-waku/waku/v2/node"
	"github.com/waku-org/go-waku/waku/v2/protocol"
	"github.com/waku-org/go-waku/waku/v2/protocol/filter"
	"github.com/waku-org/go-waku/waku/v2/protocol/legacy_store"
	lpb "github.com/waku-org/go-waku/waku/v2/protocol/legacy_store/pb"
	"github.com/waku-org/go-waku/waku/v2/protocol/lightpush"
	"github.com/waku-org/go-waku/waku/v2/protocol/pb"
	"github.com/waku-org/go-waku/waku/v2/protocol/peer_exchange"
	"github.com/waku-org/go-waku/waku/v2/protocol/relay"
	"github.com/waku-org/go-waku/waku/v2/protocol/store"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

type obj = map[string]any

var out = make(chan obj, 1<<18)

// own holds the hashes this program published: go-waku's relay hands a node's own publishes to its
// subscriptions, so message events say "own": true for those.
var own sync.Map

func emit(o obj) { out <- o }

// muted stops the per-message events (relay_stats mute): at thousands of messages a second the
// JSON lines would cost more CPU than the relay being measured.
var muted atomic.Bool

// stampMagic opens a stamped payload: "wbsb" ‖ seq ‖ send time (ns), both 8 bytes big-endian.
var stampMagic = []byte("wbsb")

// receipts counts what relay delivered from other nodes (relay_stats), so a benchmark reads one
// reply instead of a line per message.
type receipts struct {
	mu          sync.Mutex
	seen        map[pb.MessageHash]struct{}
	doubled     int
	first, last int64
	latMs       []float64
}

var recv = &receipts{seen: map[pb.MessageHash]struct{}{}}

func (r *receipts) add(h pb.MessageHash, payload []byte) {
	now := time.Now().UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seen[h]; ok {
		r.doubled++
		return
	}
	r.seen[h] = struct{}{}
	if r.first == 0 {
		r.first = now
	}
	r.last = now
	if len(payload) >= 20 && string(payload[:4]) == string(stampMagic) {
		sent := int64(binary.BigEndian.Uint64(payload[12:20]))
		r.latMs = append(r.latMs, float64(now-sent)/1e6)
	}
}

func quantile(sorted []float64, q float64) any {
	if len(sorted) == 0 {
		return nil
	}
	i := int(q * float64(len(sorted)))
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func (r *receipts) stats(p params) obj {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := append([]float64(nil), r.latMs...)
	sort.Float64s(lat)
	lateMs := float64(p.num("late_ms", 0))
	late := 0
	for _, x := range lat {
		if lateMs > 0 && x > lateMs {
			late++
		}
	}
	res := obj{"received": len(r.seen), "doubled": r.doubled, "first_ns": r.first, "last_ns": r.last,
		"stamped": len(lat), "late": late,
		"latency_ms": obj{"p50": quantile(lat, 0.5), "p99": quantile(lat, 0.99), "max": quantile(lat, 1)}}
	if p.boolean("reset", false) {
		r.seen = map[pb.MessageHash]struct{}{}
		r.doubled, r.first, r.last, r.latMs = 0, 0, 0, nil
	}
	if v, ok := p["mute"].(bool); ok {
		muted.Store(v)
	}
	return res
}

func writer(done chan struct{}) {
	w := bufio.NewWriterSize(os.Stdout, 1<<16)
	enc := json.NewEncoder(w)
	for o := range out {
		if err := enc.Encode(o); err != nil {
			fmt.Fprintln(os.Stderr, "encode:", err)
		}
		if len(out) == 0 {
			w.Flush()
		}
	}
	w.Flush()
	close(done)
}

func unhex(s string) ([]byte, error) {
	return hex.DecodeString(strings.TrimPrefix(s, "0x"))
}

type harness struct {
	ctx  context.Context
	w    *node.WakuNode
	mu   sync.Mutex
	subs map[string]bool // relay pubsub topics we read
}

func msgEvent(via string, env *protocol.Envelope) obj {
	m := env.Message()
	h := env.Hash()
	return obj{"event": "message", "via": via, "pubsub_topic": env.PubsubTopic(), "hash": hex.EncodeToString(h[:]),
		"content_topic": m.ContentTopic, "payload": hex.EncodeToString(m.Payload), "timestamp": m.GetTimestamp(),
		"meta": hex.EncodeToString(m.Meta), "version": m.GetVersion(), "own": isOwn(h)}
}

func isOwn(h pb.MessageHash) bool {
	_, ok := own.Load(h)
	return ok
}

// publish relays m, remembering its hash first (the own-subscription delivery may come before
// Publish returns).
func (h *harness) publish(m *pb.WakuMessage, topic string) (pb.MessageHash, error) {
	var opts []relay.PublishOption
	if topic == "" {
		t, err := protocol.GetPubSubTopicFromContentTopic(m.ContentTopic)
		if err != nil {
			return pb.MessageHash{}, err
		}
		topic = t
	}
	opts = append(opts, relay.WithPubSubTopic(topic))
	own.Store(m.Hash(topic), true)
	return h.w.Relay().Publish(h.ctx, m, opts...)
}

func (h *harness) subscribeRelay(pubsubTopic string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[pubsubTopic] {
		return nil
	}
	subs, err := h.w.Relay().Subscribe(h.ctx, protocol.NewContentFilter(pubsubTopic), relay.WithCacheSize(4096))
	if err != nil {
		return err
	}
	h.subs[pubsubTopic] = true
	for _, s := range subs {
		go func(s *relay.Subscription) {
			for env := range s.Ch {
				h := env.Hash()
				if !isOwn(h) {
					recv.add(h, env.Message().Payload)
				}
				if !muted.Load() {
					emit(msgEvent("relay", env))
				}
			}
		}(s)
	}
	return nil
}

// params is one command's JSON object.
type params map[string]any

func (p params) str(k string) string {
	v, _ := p[k].(string)
	return v
}

func (p params) num(k string, def int64) int64 {
	switch v := p[k].(type) {
	case json.Number: // commands are decoded with UseNumber: ns timestamps exceed float64's 53 bits
		if n, err := v.Int64(); err == nil {
			return n
		}
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return def
}

func (p params) optNum(k string) *int64 {
	if _, ok := p[k]; !ok || p[k] == nil {
		return nil
	}
	n := p.num(k, 0)
	return &n
}

func (p params) boolean(k string, def bool) bool {
	if v, ok := p[k].(bool); ok {
		return v
	}
	return def
}

func (p params) strs(k string) []string {
	var r []string
	if a, ok := p[k].([]any); ok {
		for _, x := range a {
			if s, ok := x.(string); ok {
				r = append(r, s)
			}
		}
	}
	return r
}

func (p params) message() (*pb.WakuMessage, error) {
	payload, err := unhex(p.str("payload"))
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	meta, err := unhex(p.str("meta"))
	if err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	ts := p.num("timestamp", time.Now().UnixNano())
	version := uint32(p.num("version", 0))
	m := &pb.WakuMessage{Payload: payload, ContentTopic: p.str("content_topic"), Timestamp: &ts, Version: &version}
	if len(meta) > 0 {
		m.Meta = meta
	}
	if p.boolean("ephemeral", false) {
		t := true
		m.Ephemeral = &t
	}
	return m, nil
}

// peerOf dials the "peer" multiaddr unless already connected and returns its id.
func (h *harness) peerOf(p params) (peer.ID, error) {
	addr, err := ma.NewMultiaddr(p.str("peer"))
	if err != nil {
		return "", fmt.Errorf("peer: %w", err)
	}
	info, err := peer.AddrInfoFromP2pAddr(addr)
	if err != nil {
		return "", err
	}
	if h.w.Host().Network().Connectedness(info.ID) != network.Connected {
		ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
		defer cancel()
		if err := h.w.DialPeerWithInfo(ctx, *info); err != nil {
			return "", err
		}
	}
	return info.ID, nil
}

func (h *harness) protocols(id peer.ID) []string {
	ps, _ := h.w.Host().Peerstore().GetProtocols(id)
	r := make([]string, 0, len(ps))
	for _, x := range ps {
		r = append(r, string(x))
	}
	return r
}

func (h *harness) info() obj {
	var addrs []string
	for _, a := range h.w.ListenAddresses() {
		addrs = append(addrs, a.String())
	}
	var protos []string
	for _, x := range h.w.Host().Mux().Protocols() {
		protos = append(protos, string(x))
	}
	return obj{"peer_id": h.w.ID(), "multiaddrs": addrs, "enr": h.w.ENR().String(), "protocols": protos}
}

func (h *harness) storeQuery(p params) (obj, error) {
	id, err := h.peerOf(p)
	if err != nil {
		return nil, err
	}
	opts := []store.RequestOption{store.WithPeer(id), store.SkipRateLimit(),
		store.WithPaging(p.boolean("forward", true), uint64(p.num("page_limit", 0))),
		store.IncludeData(p.boolean("include_data", true))}
	if c := p.str("cursor"); c != "" {
		b, err := unhex(c)
		if err != nil {
			return nil, err
		}
		opts = append(opts, store.WithCursor(b))
	}
	var criteria store.Criteria
	if hs := p.strs("hashes"); len(hs) > 0 {
		var mh []pb.MessageHash
		for _, x := range hs {
			b, err := unhex(x)
			if err != nil {
				return nil, err
			}
			mh = append(mh, pb.ToMessageHash(b))
		}
		criteria = store.MessageHashCriteria{MessageHashes: mh}
	} else {
		criteria = store.FilterCriteria{ContentFilter: protocol.NewContentFilter(p.str("pubsub_topic"), p.strs("content_topics")...),
			TimeStart: p.optNum("time_start"), TimeEnd: p.optNum("time_end")}
	}
	ctx, cancel := context.WithTimeout(h.ctx, 60*time.Second)
	defer cancel()
	res, err := h.w.Store().Request(ctx, criteria, opts...)
	if err != nil {
		var se *store.StoreError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("store error %d: %s", se.Code, se.Message)
		}
		return nil, err
	}
	maxPages := int(p.num("max_pages", 1000))
	var pages []obj
	for len(pages) < maxPages {
		var hashes []string
		var msgs []obj
		for _, kv := range res.Messages() {
			hashes = append(hashes, hex.EncodeToString(kv.MessageHash))
			if m := kv.GetMessage(); m != nil {
				msgs = append(msgs, obj{"pubsub_topic": kv.GetPubsubTopic(), "content_topic": m.ContentTopic,
					"payload": hex.EncodeToString(m.Payload), "timestamp": m.GetTimestamp(), "meta": hex.EncodeToString(m.Meta)})
			}
		}
		pages = append(pages, obj{"hashes": hashes, "messages": msgs, "cursor": hex.EncodeToString(res.Cursor()),
			"status_code": res.Response().GetStatusCode()})
		if res.Cursor() == nil {
			break
		}
		if err := res.Next(ctx, store.SkipRateLimit()); err != nil {
			return nil, err
		}
		if res.IsComplete() {
			break
		}
	}
	return obj{"pages": pages}, nil
}

func (h *harness) legacyStoreQuery(p params) (obj, error) {
	id, err := h.peerOf(p)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(h.ctx, 60*time.Second)
	defer cancel()
	q := legacy_store.Query{PubsubTopic: p.str("pubsub_topic"), ContentTopics: p.strs("content_topics"),
		StartTime: p.optNum("start_time"), EndTime: p.optNum("end_time")}
	opts := []legacy_store.HistoryRequestOption{legacy_store.WithPeer(id),
		legacy_store.WithPaging(p.boolean("forward", true), uint64(p.num("page_size", 0)))}
	if c, ok := p["cursor"].(map[string]any); ok { // resume from a cursor a previous reply gave
		cp := params(c)
		digest, err := unhex(cp.str("digest"))
		if err != nil {
			return nil, err
		}
		opts = append(opts, legacy_store.WithCursor(&lpb.Index{Digest: digest, ReceiverTime: cp.num("receiver_time", 0),
			SenderTime: cp.num("sender_time", 0), PubsubTopic: cp.str("pubsub_topic")}))
	}
	res, err := h.w.LegacyStore().Query(ctx, q, opts...)
	if err != nil {
		return nil, err
	}
	maxPages := int(p.num("max_pages", 1000))
	var pages []obj
	for len(pages) < maxPages {
		more, err := res.Next(ctx)
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		var msgs []obj
		for _, m := range res.GetMessages() {
			hh := m.Hash(p.str("pubsub_topic"))
			msgs = append(msgs, obj{"hash": hex.EncodeToString(hh[:]), "content_topic": m.ContentTopic,
				"payload": hex.EncodeToString(m.Payload), "timestamp": m.GetTimestamp(), "meta": hex.EncodeToString(m.Meta)})
		}
		page := obj{"messages": msgs, "cursor": nil}
		if c := res.Cursor(); c != nil {
			page["cursor"] = cursorObj(c)
		}
		pages = append(pages, page)
	}
	return obj{"pages": pages}, nil
}

func cursorObj(c *lpb.Index) obj {
	return obj{"digest": hex.EncodeToString(c.Digest), "receiver_time": c.ReceiverTime, "sender_time": c.SenderTime,
		"pubsub_topic": c.PubsubTopic}
}

func (h *harness) handle(cmd string, p params) (obj, error) {
	switch cmd {
	case "info":
		return h.info(), nil
	case "connect":
		ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
		defer cancel()
		addr, err := ma.NewMultiaddr(p.str("multiaddr"))
		if err != nil {
			return nil, err
		}
		info, err := peer.AddrInfoFromP2pAddr(addr)
		if err != nil {
			return nil, err
		}
		if err := h.w.DialPeerWithInfo(ctx, *info); err != nil {
			return nil, err
		}
		return obj{"peer_id": info.ID.String()}, nil
	case "disconnect":
		id, err := peer.Decode(p.str("peer_id"))
		if err != nil {
			return nil, err
		}
		return obj{}, h.w.ClosePeerById(id)
	case "peers":
		var r []obj
		for _, id := range h.w.Host().Peerstore().Peers() {
			if id == h.w.Host().ID() {
				continue
			}
			var addrs []string
			for _, a := range h.w.Host().Peerstore().Addrs(id) {
				addrs = append(addrs, a.String())
			}
			r = append(r, obj{"peer_id": id.String(), "protocols": h.protocols(id), "addrs": addrs,
				"connected": h.w.Host().Network().Connectedness(id) == network.Connected})
		}
		return obj{"peers": r}, nil
	case "subscribe":
		topic := p.str("pubsub_topic")
		if topic == "" {
			cts := p.strs("content_topics")
			if len(cts) == 0 {
				return nil, errors.New("pubsub_topic or content_topics needed")
			}
			t, err := protocol.GetPubSubTopicFromContentTopic(cts[0])
			if err != nil {
				return nil, err
			}
			topic = t
		}
		return obj{"pubsub_topic": topic}, h.subscribeRelay(topic)
	case "publish":
		m, err := p.message()
		if err != nil {
			return nil, err
		}
		hash, err := h.publish(m, p.str("pubsub_topic"))
		if err != nil {
			return nil, err
		}
		return obj{"hash": hex.EncodeToString(hash[:])}, nil
	case "publish_many":
		return h.publishMany(p)
	case "relay_stats":
		return recv.stats(p), nil
	case "lightpush":
		id, err := h.peerOf(p)
		if err != nil {
			return nil, err
		}
		m, err := p.message()
		if err != nil {
			return nil, err
		}
		opts := []lightpush.RequestOption{lightpush.WithPeer(id)}
		if t := p.str("pubsub_topic"); t != "" {
			opts = append(opts, lightpush.WithPubSubTopic(t))
		}
		ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
		defer cancel()
		hash, err := h.w.Lightpush().Publish(ctx, m, opts...)
		if err != nil {
			return nil, err
		}
		return obj{"hash": hex.EncodeToString(hash[:])}, nil
	case "filter_subscribe":
		id, err := h.peerOf(p)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
		defer cancel()
		subs, err := h.w.FilterLightnode().Subscribe(ctx, protocol.NewContentFilter(p.str("pubsub_topic"), p.strs("content_topics")...),
			filter.WithPeer(id))
		if err != nil {
			return nil, err
		}
		for _, s := range subs {
			go func(s chan *protocol.Envelope) {
				for env := range s {
					emit(msgEvent("filter", env))
				}
			}(s.C)
		}
		return obj{"subscriptions": len(subs)}, nil
	case "filter_ping":
		id, err := h.peerOf(p)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
		defer cancel()
		return obj{}, h.w.FilterLightnode().Ping(ctx, id)
	case "filter_unsubscribe":
		id, err := h.peerOf(p)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
		defer cancel()
		res, err := h.w.FilterLightnode().Unsubscribe(ctx, protocol.NewContentFilter(p.str("pubsub_topic"), p.strs("content_topics")...),
			filter.WithPeer(id))
		if err != nil {
			return nil, err
		}
		var errs []string
		if res != nil {
			for _, e := range res.Errors() {
				if e.Err != nil {
					errs = append(errs, e.Err.Error())
				}
			}
		}
		return obj{"errors": errs}, nil
	case "store_query":
		return h.storeQuery(p)
	case "legacy_store_query":
		return h.legacyStoreQuery(p)
	case "px_request":
		id, err := h.peerOf(p)
		if err != nil {
			return nil, err
		}
		// The node's own context, not a per-command one: go-waku hands the discovered peers to its
		// peer connector under this context (peer_exchange/client.go handleResponse), which stops
		// consuming them once it is cancelled.
		return obj{}, h.w.PeerExchange().Request(h.ctx, int(p.num("num_peers", 5)), peer_exchange.WithPeer(id))
	}
	return nil, fmt.Errorf("unknown command %q", cmd)
}

func (h *harness) publishMany(p params) (obj, error) {
	count := int(p.num("count", 1))
	size := int(p.num("size", 16))
	rate := p.num("rate", 0)
	topic := p.str("pubsub_topic")
	stamp := p.boolean("stamp", false)
	seq := uint64(p.num("first_seq", 0))
	keep := p.boolean("hashes", true)
	version := uint32(p.num("version", 0))
	hashes := make([]string, 0, count)
	start := time.Now()
	for i := 0; i < count; i++ {
		if rate > 0 {
			due := start.Add(time.Duration(int64(i) * int64(time.Second) / rate))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		payload := make([]byte, size)
		_, _ = rand.Read(payload)
		ts := time.Now().UnixNano()
		if stamp && size >= 20 {
			copy(payload, stampMagic)
			binary.BigEndian.PutUint64(payload[4:12], seq+uint64(i))
			binary.BigEndian.PutUint64(payload[12:20], uint64(ts))
		}
		m := &pb.WakuMessage{Payload: payload, ContentTopic: p.str("content_topic"), Timestamp: &ts, Version: &version}
		hash, err := h.publish(m, topic)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		if keep {
			hashes = append(hashes, hex.EncodeToString(hash[:]))
		}
	}
	end := time.Now()
	return obj{"hashes": hashes, "seconds": end.Sub(start).Seconds(), "start_ns": start.UnixNano(),
		"end_ns": end.UnixNano(), "published": count}, nil
}

func parseKey(s string) (*ecdsa.PrivateKey, error) {
	if s == "" {
		return crypto.GenerateKey()
	}
	b, err := unhex(s)
	if err != nil {
		return nil, err
	}
	return crypto.ToECDSA(b)
}

func main() {
	host := flag.String("host", "127.0.0.1", "listen address")
	port := flag.Int("port", 0, "TCP port (0 = any)")
	wsPort := flag.Int("ws-port", -1, "WebSocket port (-1 = off, 0 = any)")
	nodekey := flag.String("nodekey", "", "secp256k1 private key, hex (default: random)")
	clusterID := flag.Uint("cluster-id", 0, "cluster id")
	shards := flag.String("shards", "", "comma-separated static shards of -cluster-id")
	pubsubTopics := flag.String("pubsub-topics", "", "comma-separated pubsub topics")
	relayOn := flag.Bool("relay", true, "mount relay")
	storeOn := flag.Bool("store", false, "legacy store server (sqlite in memory)")
	filterOn := flag.Bool("filter", false, "filter full node")
	lightpushOn := flag.Bool("lightpush", false, "lightpush server")
	pxOn := flag.Bool("peer-exchange", false, "peer exchange server")
	maxMsg := flag.Int("max-msg-size", 150*1024, "relay max message size")
	discv5Port := flag.Int("discv5-port", 0, "discv5 UDP port (0 = off; then -port must be fixed too)")
	discv5Boot := flag.String("discv5-bootnodes", "", "comma-separated ENRs")
	logLevel := flag.String("log-level", "warn", "zap level for stderr")
	flag.Parse()

	lvl, err := zapcore.ParseLevel(*logLevel)
	if err != nil {
		lvl = zapcore.WarnLevel
	}
	zcfg := zap.NewDevelopmentConfig()
	zcfg.Level = zap.NewAtomicLevelAt(lvl)
	zcfg.OutputPaths = []string{"stderr"}
	logger, _ := zcfg.Build()

	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "wakuv2:", err)
		os.Exit(1)
	}
	key, err := parseKey(*nodekey)
	if err != nil {
		fail(err)
	}
	addr, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		fail(err)
	}
	var topics []string
	for _, s := range strings.Split(*shards, ",") {
		if s = strings.TrimSpace(s); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				fail(err)
			}
			topics = append(topics, protocol.NewStaticShardingPubsubTopic(uint16(*clusterID), uint16(n)).String())
		}
	}
	for _, s := range strings.Split(*pubsubTopics, ",") {
		if s = strings.TrimSpace(s); s != "" {
			topics = append(topics, s)
		}
	}

	conns := make(chan node.PeerConnection, 1024)
	opts := []node.WakuNodeOption{
		node.WithLogger(logger),
		node.WithPrivateKey(key),
		node.WithHostAddress(addr),
		node.WithClusterID(uint16(*clusterID)),
		// Every loopback peer shares one IP; go-waku's gater allows 5 per IP by default.
		node.WithMaxConnectionsPerIP(1000),
		node.WithConnectionNotification(conns),
		node.WithMaxMsgSize(*maxMsg),
		node.WithPrometheusRegisterer(prometheus.NewRegistry()),
		node.WithWakuFilterLightNode(),
	}
	if len(topics) > 0 {
		opts = append(opts, node.WithPubSubTopics(topics))
	}
	if *wsPort >= 0 {
		opts = append(opts, node.WithWebsockets(*host, *wsPort))
	}
	if *relayOn {
		opts = append(opts, node.WithWakuRelayAndMinPeers(0))
	}
	if *storeOn {
		db, err := sql.Open("sqlite3", "file::memory:?cache=shared")
		if err != nil {
			fail(err)
		}
		db.SetMaxOpenConns(1) // one connection keeps the in-memory database alive
		dbStore, err := persistence.NewDBStore(prometheus.NewRegistry(), logger, persistence.WithDB(db),
			persistence.WithMigrations(sqlite.Migrations), persistence.WithRetentionPolicy(0, 0))
		if err != nil {
			fail(err)
		}
		opts = append(opts, node.WithWakuStore(), node.WithMessageProvider(dbStore))
	}
	if *filterOn {
		opts = append(opts, node.WithWakuFilterFullNode())
	}
	if *lightpushOn {
		opts = append(opts, node.WithLightPush())
	}
	if *pxOn {
		opts = append(opts, node.WithPeerExchange())
	}

	if *discv5Port > 0 {
		// go-waku's discv5 maps ports with NAT-PMP/UPnP unless an advertise address is given
		// (waku/v2/discv5/discover.go NewDiscoveryV5); the advertised TCP address also goes in the ENR.
		adv, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/%s/tcp/%d", *host, *port))
		if err != nil {
			fail(err)
		}
		var boot []*enode.Node
		for _, s := range strings.Split(*discv5Boot, ",") {
			if s = strings.TrimSpace(s); s != "" {
				n, err := enode.Parse(enode.ValidSchemes, s)
				if err != nil {
					fail(err)
				}
				boot = append(boot, n)
			}
		}
		opts = append(opts, node.WithAdvertiseAddresses(adv), node.WithDiscoveryV5(uint(*discv5Port), boot, true))
	}

	w, err := node.New(opts...)
	if err != nil {
		fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := w.Start(ctx); err != nil {
		fail(err)
	}
	if *discv5Port > 0 {
		if err := w.DiscV5().Start(ctx); err != nil {
			fail(err)
		}
	}
	h := &harness{ctx: ctx, w: w, subs: map[string]bool{}}
	done := make(chan struct{})
	go writer(done)
	if *relayOn {
		for _, t := range topics {
			if err := h.subscribeRelay(t); err != nil {
				fail(err)
			}
		}
	}
	go func() {
		for c := range conns {
			var protos []string
			if c.Connected { // identify may still be running; the peers command has the final list
				time.Sleep(200 * time.Millisecond)
				protos = h.protocols(c.PeerID)
			}
			emit(obj{"event": "peer", "peer_id": c.PeerID.String(), "connected": c.Connected, "protocols": protos})
		}
	}()
	ready := h.info()
	ready["event"] = "ready"
	emit(ready)

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	var wg sync.WaitGroup
	for in.Scan() {
		var p params
		dec := json.NewDecoder(strings.NewReader(in.Text()))
		dec.UseNumber()
		if err := dec.Decode(&p); err != nil {
			fmt.Fprintln(os.Stderr, "bad command line:", err)
			continue
		}
		wg.Add(1)
		go func(p params) { // commands run concurrently; each reply carries its id
			defer wg.Done()
			id := p["id"]
			res, err := h.handle(p.str("cmd"), p)
			if err != nil {
				emit(obj{"id": id, "ok": false, "error": err.Error()})
				return
			}
			if res == nil {
				res = obj{}
			}
			res["id"] = id
			res["ok"] = true
			emit(res)
		}(p)
	}
	cancel()
	wg.Wait()
	w.Stop()
	// Late connection events may still be emitted: never close ``out``; wait until it drained.
	for i := 0; i < 200 && len(out) > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	_ = done
}
