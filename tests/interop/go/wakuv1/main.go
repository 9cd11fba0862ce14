// Command wakuv1 is a status-go Waku v1 peer (github.com/status-im/status-go/waku at v1.1.0, the
// real `waku` package on status-im's go-ethereum p2p.Server) driven over JSON lines, for the
// interop tests of waku-bridge.  Several instances can run on one host (each on its own port).
//
// Start-up flags (all optional):
//
//	-port N                  TCP listen port on 127.0.0.1 (0: any free port; the ready event says which)
//	-key HEX                 secp256k1 node key (generated when absent)
//	-pow F                   MinimumAcceptedPoW (0.002)
//	-full-node               FullNode: accept and forward every topic (true)
//	-bloom-mode              BloomFilterMode (false)
//	-light                   LightClient (false)
//	-confirmations           EnableConfirmations: answer every Messages packet with Message Response (12) + Batch Ack (11)
//	-max-message-size N      MaxMessageSize in bytes (1 MiB); also the largest packet before status-go disconnects
//	-rate-packets-ip N, -rate-packets-peer N, -rate-bytes-ip N, -rate-bytes-peer N
//	                         register common.PeerRateLimiter with these limits (advertised in Status keys 4 and 6)
//	-rate-tolerance N        with a limiter: DropPeerRateLimiterHandler{Tolerance: N} (1), so exceeding really disconnects
//	-mailserver              register a MailServer that reports each P2P Request (126) as a p2p_request event
//	-max-peers N             p2p.Server MaxPeers (25)
//
// stdin: one JSON object per line, {"id": n, "cmd": "...", ...params}.  stdout: one JSON object per
// line, either a reply {"id": n, "ok": true, ...} / {"id": n, "ok": false, "error": "..."} or an
// event {"event": "...", ...}.  Logs go to stderr.  The program exits on stdin EOF.  Bytes are hex
// (with or without 0x in input; without in output).  Peers are named by their 32-byte enode ID (hex).
// Commands run concurrently (a PoW seal must not hold up the others): wait for a reply before
// sending a command that depends on its effect.
//
// Commands:
//
//	info                                     -> {enode, id, peers: [{peer, remote, caps}], pow, full_node,
//	                                            metrics: {"waku_rate_limits_exceeded_total{type=peer_id}": n, ...}}
//	connect {enode}                          -> {}     dial (p2p.Server.AddPeer; static, redialled)
//	disconnect {peer | enode}                -> {}     drop the peer (and stop redialling it)
//	post {topic, data, ttl, pow?, nonce?, expiry?, expiry_offset?, work_time?}
//	                                         -> {hash, pow, nonce, expiry}   Seal (if pow>0 and no nonce), then Waku.Send
//	set_pow {pow, tolerate?}                 -> {}     Waku.SetMinimumPoW (Status Update {0})
//	set_bloom {bloom? | topics?}             -> {}     Waku.SetBloomFilter (Status Update {1}; not sent by a full node)
//	set_topic_interest {topics}              -> {}     Waku.SetTopicInterest (Status Update {5}; not sent by a full node)
//	set_full_node {full}                     -> {}     Waku.SetFullNode
//	trust {peer}                             -> {}     Waku.AllowP2PMessagesFromPeer
//	p2p_messages {peer, envelopes: [{expiry, ttl, topic, data, nonce}]}
//	                                         -> {hashes}   Waku.SendP2PMessages (code 127)
//	request_complete {peer, request_id, last_envelope_hash?, cursor?}
//	                                         -> {}     Waku.SendHistoricMessageResponse(CreateMailServerRequestCompletedPayload) (code 125)
//	send_raw {peer, code, hex}               -> {}     write one raw waku packet (msg-data = hex) to the peer
//	post_many {topic, count, size, ttl, pow, rate?, stamp?, first_seq?}
//	                                         -> {posted, errors, first_error, seconds, start_ns, end_ns}
//	                                            count random envelopes, each sealed and sent when due at rate/s
//	                                            (0: back to back); stamp: the data starts "wbsb" ‖ seq (8 bytes)
//	                                            ‖ send time ns (8 bytes), seq from first_seq
//	envelope_stats {mute?, reset?, late_ms?} -> {received, first_ns, last_ns, stamped, latency_ms: {p50, p99, max}, late}
//	                                            envelopes from other nodes newly cached since the last reset (as the
//	                                            envelope event reports them), latency of stamped ones, late = over
//	                                            late_ms; mute true stops the envelope and envelope_seen events
//
// Events:
//
//	ready {enode, id, port}
//	peer_add {peer, remote, enode, caps}  /  peer_drop {peer, remote, error}   (p2p.PeerEvent)
//	status {peer, dir: in|out, code: 0|22, options, keys, raw}   every Status / Status Update, both
//	       directions, decoded with v1.StatusOptions; keys = the option keys in wire order
//	messages {peer, dir, batch, count}           every Messages (1) packet; batch = keccak256(msg-data)
//	message_response {peer, dir, batch, errors: [{hash, code, description}], raw}   code 12
//	batch_ack {peer, dir, batch}                 code 11
//	p2p_message {peer, dir, hashes}              code 127
//	p2p_request_complete {peer, dir, payload}    code 125
//	p2p_request {peer, kind: messages_request|envelope, ...}   (with -mailserver)
//	envelope {hash, topic, data, expiry, ttl, nonce, pow, own}   every envelope newly cached by the node
//	       (via RegisterBridge; own = posted here).  A -light node reports only its own posts (status-go
//	       adds received envelopes as P2P ones in light mode, and bridges no P2P envelope).
//	envelope_seen {hash, topic, peer}            envelope.received, for every envelope of a Messages
//	       packet, rejected ones included
//	batch_acknowledged {peer, batch, errors}     envelope feed's batch.acknowledged
package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gethcommon "github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p"
	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/ethereum/go-ethereum/rlp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/status-im/status-go/waku"
	"github.com/status-im/status-go/waku/common"
	v1 "github.com/status-im/status-go/waku/v1"
	"go.uber.org/zap"
)

type harness struct {
	w   *waku.Waku
	srv *p2p.Server
	out *emitter

	mu    sync.Mutex
	rws   map[enode.ID]p2p.MsgReadWriter // the tee of each connected peer (for send_raw)
	nodes map[enode.ID]*enode.Node       // dialled nodes (for disconnect)
	own   map[gethcommon.Hash]bool       // hashes posted here

	enodeURL string
}

func main() {
	port := flag.Int("port", 0, "listen port on 127.0.0.1")
	keyHex := flag.String("key", "", "node key (hex)")
	minPow := flag.Float64("pow", 0.002, "MinimumAcceptedPoW")
	fullNode := flag.Bool("full-node", true, "FullNode")
	bloomMode := flag.Bool("bloom-mode", false, "BloomFilterMode")
	light := flag.Bool("light", false, "LightClient")
	confirmations := flag.Bool("confirmations", false, "EnableConfirmations")
	maxMsg := flag.Uint("max-message-size", uint(common.DefaultMaxMessageSize), "MaxMessageSize")
	pIP := flag.Int64("rate-packets-ip", 0, "PacketLimitPerSecIP")
	pPeer := flag.Int64("rate-packets-peer", 0, "PacketLimitPerSecPeerID")
	bIP := flag.Int64("rate-bytes-ip", 0, "BytesLimitPerSecIP")
	bPeer := flag.Int64("rate-bytes-peer", 0, "BytesLimitPerSecPeerID")
	tolerance := flag.Int64("rate-tolerance", 1, "DropPeerRateLimiterHandler Tolerance")
	mailserver := flag.Bool("mailserver", false, "register a MailServer")
	maxPeers := flag.Int("max-peers", 25, "MaxPeers")
	flag.Parse()

	out := newEmitter(os.Stdout)
	go out.run()

	var key *ecdsa.PrivateKey
	var err error
	if *keyHex != "" {
		key, err = crypto.HexToECDSA(strings.TrimPrefix(*keyHex, "0x"))
	} else {
		key, err = crypto.GenerateKey()
	}
	if err != nil {
		fatal("key: %v", err)
	}

	cfg := waku.Config{
		MaxMessageSize:           uint32(*maxMsg),
		MinimumAcceptedPoW:       *minPow,
		BloomFilterMode:          *bloomMode,
		LightClient:              *light,
		FullNode:                 *fullNode,
		RestrictLightClientsConn: true,
		EnableConfirmations:      *confirmations,
	}
	logger, _ := zap.NewDevelopment(zap.ErrorOutput(zap.CombineWriteSyncers(os.Stderr)))
	w := waku.New(&cfg, logger.Named("waku").WithOptions(zap.IncreaseLevel(zap.InfoLevel)))
	h := &harness{w: w, out: out, rws: map[enode.ID]p2p.MsgReadWriter{}, nodes: map[enode.ID]*enode.Node{},
		own: map[gethcommon.Hash]bool{}}

	if *pIP != 0 || *pPeer != 0 || *bIP != 0 || *bPeer != 0 {
		w.RegisterRateLimiter(common.NewPeerRateLimiter(&common.PeerRateLimiterConfig{
			PacketLimitPerSecIP: *pIP, PacketLimitPerSecPeerID: *pPeer,
			BytesLimitPerSecIP: *bIP, BytesLimitPerSecPeerID: *bPeer,
		}, &common.DropPeerRateLimiterHandler{Tolerance: *tolerance}, common.MetricsRateLimiterHandler{}))
	}
	if *mailserver {
		w.RegisterMailServer(&mailServer{h: h})
	}
	b := &bridge{out: make(chan *common.Envelope), in: make(chan *common.Envelope, 1024)}
	w.RegisterBridge(b)
	go h.drainBridge(b.in)

	// The protocols of the package, each Run behind a tee of its MsgReadWriter.
	var protos []p2p.Protocol
	for _, p := range w.Protocols() {
		p := p
		run := p.Run
		p.Run = func(peer *p2p.Peer, rw p2p.MsgReadWriter) error {
			t := &tee{rw: rw, h: h, peer: peer.ID()}
			if p.Version == 1 {
				h.mu.Lock()
				h.rws[peer.ID()] = t
				h.mu.Unlock()
				defer func() {
					h.mu.Lock()
					if h.rws[peer.ID()] == t {
						delete(h.rws, peer.ID())
					}
					h.mu.Unlock()
				}()
			}
			return run(peer, t)
		}
		protos = append(protos, p)
	}

	h.srv = &p2p.Server{Config: p2p.Config{
		PrivateKey:      key,
		MaxPeers:        *maxPeers,
		NoDiscovery:     true,
		DiscoveryV5:     false,
		ListenAddr:      fmt.Sprintf("127.0.0.1:%d", *port),
		Protocols:       protos,
		Name:            "status-go-waku/v1.1.0-interop",
		NAT:             nil,
		EnableMsgEvents: false,
		NodeDatabase:    "",
	}}
	events := make(chan *p2p.PeerEvent, 256)
	sub := h.srv.SubscribeEvents(events)
	defer sub.Unsubscribe()
	go h.peerEvents(events)

	envEvents := make(chan common.EnvelopeEvent, 4096)
	esub := w.SubscribeEnvelopeEvents(envEvents)
	defer esub.Unsubscribe()
	go h.envelopeEvents(envEvents)

	if err := w.Start(); err != nil {
		fatal("waku start: %v", err)
	}
	if err := h.srv.Start(); err != nil {
		fatal("p2p start: %v", err)
	}
	self := h.srv.Self()
	listenPort := *port
	if addr, err := net.ResolveTCPAddr("tcp", h.srv.ListenAddr); err == nil {
		listenPort = addr.Port
	}
	// Without "?discport=0" (NoDiscovery): the plain form every enode parser takes.
	h.enodeURL = fmt.Sprintf("enode://%x@127.0.0.1:%d", crypto.FromECDSAPub(&key.PublicKey)[1:], listenPort)
	enodeURL := h.enodeURL
	out.emit(map[string]any{"event": "ready", "enode": enodeURL, "id": self.ID().String(), "port": listenPort})

	h.readCommands(os.Stdin)

	h.srv.Stop()
	_ = w.Stop()
	out.close()
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "wakuv1: "+f+"\n", a...)
	os.Exit(1)
}

// --- output: an unbounded queue and one writer, so no waku goroutine ever waits on stdout ---

type emitter struct {
	mu     sync.Mutex
	cond   *sync.Cond
	queue  [][]byte
	closed bool
	done   chan struct{}
	w      *bufio.Writer
}

func newEmitter(f io.Writer) *emitter {
	e := &emitter{w: bufio.NewWriterSize(f, 1<<16), done: make(chan struct{})}
	e.cond = sync.NewCond(&e.mu)
	return e
}

func (e *emitter) emit(obj map[string]any) {
	line, err := json.Marshal(obj)
	if err != nil {
		fmt.Fprintf(os.Stderr, "wakuv1: marshal: %v\n", err)
		return
	}
	e.mu.Lock()
	e.queue = append(e.queue, append(line, '\n'))
	e.cond.Signal()
	e.mu.Unlock()
}

func (e *emitter) run() {
	defer close(e.done)
	for {
		e.mu.Lock()
		for len(e.queue) == 0 && !e.closed {
			e.cond.Wait()
		}
		batch := e.queue
		e.queue = nil
		closed := e.closed
		e.mu.Unlock()
		for _, line := range batch {
			_, _ = e.w.Write(line)
		}
		_ = e.w.Flush()
		if closed && len(batch) == 0 {
			return
		}
	}
}

func (e *emitter) close() {
	e.mu.Lock()
	e.closed = true
	e.cond.Signal()
	e.mu.Unlock()
	<-e.done
}

// --- commands ---

type command map[string]any

func (c command) str(k string) string {
	v, _ := c[k].(string)
	return v
}

func (c command) num(k string, def float64) float64 {
	if v, ok := c[k].(float64); ok {
		return v
	}
	return def
}

func (c command) has(k string) bool {
	v, ok := c[k]
	return ok && v != nil
}

func unhex(s string) ([]byte, error) {
	return hex.DecodeString(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X"))
}

func (h *harness) readCommands(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var wg sync.WaitGroup
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var c command
		if err := json.Unmarshal(line, &c); err != nil {
			h.out.emit(map[string]any{"event": "error", "message": "bad json: " + err.Error()})
			continue
		}
		wg.Add(1)
		go func() { // a slow command (PoW) never holds up the others
			defer wg.Done()
			reply, err := h.handle(c)
			if reply == nil {
				reply = map[string]any{}
			}
			reply["id"] = c["id"]
			if err != nil {
				reply["ok"] = false
				reply["error"] = err.Error()
			} else {
				reply["ok"] = true
			}
			h.out.emit(reply)
		}()
	}
	wg.Wait()
}

func (h *harness) peerID(c command) (enode.ID, error) {
	if u := c.str("enode"); u != "" {
		n, err := enode.ParseV4(u)
		if err != nil {
			return enode.ID{}, err
		}
		return n.ID(), nil
	}
	b, err := unhex(c.str("peer"))
	if err != nil || len(b) != 32 {
		return enode.ID{}, fmt.Errorf("peer must be a 32-byte enode ID")
	}
	var id enode.ID
	copy(id[:], b)
	return id, nil
}

func parseTopics(v any) ([]common.TopicType, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("topics must be a list")
	}
	topics := make([]common.TopicType, 0, len(list))
	for _, t := range list {
		s, _ := t.(string)
		b, err := unhex(s)
		if err != nil || len(b) != common.TopicLength {
			return nil, fmt.Errorf("bad topic %v", t)
		}
		topics = append(topics, common.BytesToTopic(b))
	}
	return topics, nil
}

func (h *harness) handle(c command) (map[string]any, error) {
	switch c.str("cmd") {
	case "info":
		peers := []map[string]any{}
		for _, p := range h.srv.Peers() {
			peers = append(peers, map[string]any{"peer": p.ID().String(), "remote": p.RemoteAddr().String(),
				"caps": capsOf(p)})
		}
		return map[string]any{"enode": h.enodeURL, "id": h.srv.Self().ID().String(), "peers": peers,
			"pow": h.w.MinPow(), "full_node": h.w.FullNode(), "metrics": wakuMetrics()}, nil
	case "connect":
		n, err := enode.ParseV4(c.str("enode"))
		if err != nil {
			return nil, err
		}
		h.mu.Lock()
		h.nodes[n.ID()] = n
		h.mu.Unlock()
		h.srv.AddPeer(n)
		return nil, nil
	case "disconnect":
		id, err := h.peerID(c)
		if err != nil {
			return nil, err
		}
		h.mu.Lock()
		n := h.nodes[id]
		delete(h.nodes, id)
		h.mu.Unlock()
		if n != nil {
			h.srv.RemovePeer(n) // also stops redialling a static node
		}
		for _, p := range h.srv.Peers() {
			if p.ID() == id {
				p.Disconnect(p2p.DiscRequested)
			}
		}
		return nil, nil
	case "post":
		return h.post(c)
	case "post_many":
		return h.postMany(c)
	case "envelope_stats":
		return recv.stats(c), nil
	case "set_pow":
		return nil, h.w.SetMinimumPoW(c.num("pow", 0), c["tolerate"] == true)
	case "set_bloom":
		var bloom []byte
		if c.has("topics") {
			topics, err := parseTopics(c["topics"])
			if err != nil {
				return nil, err
			}
			bloom = make([]byte, common.BloomFilterSize)
			for _, t := range topics {
				for i, v := range t.ToBloom() {
					bloom[i] |= v
				}
			}
		} else {
			var err error
			if bloom, err = unhex(c.str("bloom")); err != nil {
				return nil, err
			}
		}
		return nil, h.w.SetBloomFilter(bloom)
	case "set_topic_interest":
		topics, err := parseTopics(c["topics"])
		if err != nil {
			return nil, err
		}
		return nil, h.w.SetTopicInterest(topics)
	case "set_full_node":
		h.w.SetFullNode(c["full"] == true)
		return nil, nil
	case "trust":
		id, err := h.peerID(c)
		if err != nil {
			return nil, err
		}
		return nil, h.w.AllowP2PMessagesFromPeer(id[:])
	case "p2p_messages":
		id, err := h.peerID(c)
		if err != nil {
			return nil, err
		}
		list, _ := c["envelopes"].([]any)
		envs := make([]*common.Envelope, 0, len(list))
		hashes := []string{}
		for _, item := range list {
			m, _ := item.(map[string]any)
			e, err := envelopeOf(command(m))
			if err != nil {
				return nil, err
			}
			envs = append(envs, e)
			hashes = append(hashes, hx(e.Hash().Bytes()))
		}
		return map[string]any{"hashes": hashes}, h.w.SendP2PMessages(id[:], envs...)
	case "request_complete":
		id, err := h.peerID(c)
		if err != nil {
			return nil, err
		}
		reqID, err1 := unhex(c.str("request_id"))
		last, err2 := unhex(c.str("last_envelope_hash"))
		cursor, err3 := unhex(c.str("cursor"))
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("bad hex")
		}
		payload := waku.CreateMailServerRequestCompletedPayload(gethcommon.BytesToHash(reqID),
			gethcommon.BytesToHash(last), cursor)
		return map[string]any{"payload": hx(payload)}, h.w.SendHistoricMessageResponse(id[:], payload)
	case "send_raw":
		id, err := h.peerID(c)
		if err != nil {
			return nil, err
		}
		data, err := unhex(c.str("hex"))
		if err != nil {
			return nil, err
		}
		h.mu.Lock()
		rw := h.rws[id]
		h.mu.Unlock()
		if rw == nil {
			return nil, fmt.Errorf("no waku/1 peer %s", id)
		}
		return nil, rw.WriteMsg(p2p.Msg{Code: uint64(c.num("code", 0)), Size: uint32(len(data)),
			Payload: bytes.NewReader(data)})
	}
	return nil, fmt.Errorf("unknown command %q", c.str("cmd"))
}

func envelopeOf(c command) (*common.Envelope, error) {
	topic, err := unhex(c.str("topic"))
	if err != nil || len(topic) != common.TopicLength {
		return nil, fmt.Errorf("topic must be 4 bytes")
	}
	data, err := unhex(c.str("data"))
	if err != nil {
		return nil, fmt.Errorf("data: %v", err)
	}
	ttl := uint32(c.num("ttl", common.DefaultTTL))
	expiry := uint32(c.num("expiry", 0))
	if expiry == 0 {
		expiry = uint32(time.Now().Unix()) + ttl + uint32(int64(c.num("expiry_offset", 0)))
	}
	return &common.Envelope{Expiry: expiry, TTL: ttl, Topic: common.BytesToTopic(topic), Data: data,
		Nonce: uint64(c.num("nonce", 0))}, nil
}

// post seals (unless a nonce is given) and sends through Waku.Send, which applies this node's own
// acceptance checks before pooling it for the 300 ms broadcast.
func (h *harness) post(c command) (map[string]any, error) {
	target := c.num("pow", 0)
	workTime := uint32(c.num("work_time", 10))
	var env *common.Envelope
	for factor := 1.0; ; factor *= 2 {
		e, err := envelopeOf(c)
		if err != nil {
			return nil, err
		}
		if !c.has("nonce") && target > 0 {
			// Seal sizes its bit target with Size() = 20+len(data), but PoW() divides by
			// len(rlpWithoutNonce): aim higher until PoW() itself meets the target.
			if err := e.Seal(&common.MessageParams{PoW: target * factor, WorkTime: workTime}); err != nil {
				return nil, err
			}
		}
		env = e
		if c.has("nonce") || target <= 0 || e.PoW() >= target || factor > 1024 {
			break
		}
	}
	hash := env.Hash()
	h.mu.Lock()
	h.own[hash] = true
	h.mu.Unlock()
	if err := h.w.Send(env); err != nil {
		return map[string]any{"hash": hx(hash.Bytes())}, err
	}
	return map[string]any{"hash": hx(hash.Bytes()), "pow": env.PoW(), "nonce": env.Nonce, "expiry": env.Expiry,
		"ttl": env.TTL}, nil
}

func hx(b []byte) string { return hex.EncodeToString(b) }

// stampMagic opens a stamped envelope's data: "wbsb" ‖ seq ‖ send time (ns), both 8 bytes big-endian.
var stampMagic = []byte("wbsb")

// postMany posts count envelopes in one command (a benchmark's load without a JSON round trip per
// envelope), each made, sealed and sent when due.
func (h *harness) postMany(c command) (map[string]any, error) {
	count := int(c.num("count", 1))
	size := int(c.num("size", 16))
	rate := c.num("rate", 0)
	stamp := c["stamp"] == true
	seq := uint64(c.num("first_seq", 0))
	errs, posted := 0, 0
	firstErr := ""
	start := time.Now()
	for i := 0; i < count; i++ {
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		data := make([]byte, size)
		_, _ = crand.Read(data)
		if stamp && size >= 20 {
			copy(data, stampMagic)
			binary.BigEndian.PutUint64(data[4:12], seq+uint64(i))
			binary.BigEndian.PutUint64(data[12:20], uint64(time.Now().UnixNano()))
		}
		one := command{"topic": c.str("topic"), "data": hx(data), "ttl": c.num("ttl", common.DefaultTTL),
			"pow": c.num("pow", 0)}
		if _, err := h.post(one); err != nil {
			errs++
			if firstErr == "" {
				firstErr = err.Error()
			}
			continue
		}
		posted++
	}
	end := time.Now()
	return map[string]any{"posted": posted, "errors": errs, "first_error": firstErr,
		"seconds": end.Sub(start).Seconds(), "start_ns": start.UnixNano(), "end_ns": end.UnixNano()}, nil
}

// muted stops the per-envelope events (envelope_stats mute): at hundreds of envelopes a second the
// JSON lines would cost the machine more CPU than the node being measured.
var muted atomic.Bool

// receipts counts the envelopes from other nodes that this node newly cached (envelope_stats).
type receipts struct {
	mu          sync.Mutex
	n           int
	first, last int64
	latMs       []float64
}

var recv = &receipts{}

func (r *receipts) add(data []byte) {
	now := time.Now().UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if r.first == 0 {
		r.first = now
	}
	r.last = now
	if len(data) >= 20 && bytes.Equal(data[:4], stampMagic) {
		r.latMs = append(r.latMs, float64(now-int64(binary.BigEndian.Uint64(data[12:20])))/1e6)
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

func (r *receipts) stats(c command) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := append([]float64(nil), r.latMs...)
	sort.Float64s(lat)
	lateMs := c.num("late_ms", 0)
	late := 0
	for _, x := range lat {
		if lateMs > 0 && x > lateMs {
			late++
		}
	}
	res := map[string]any{"received": r.n, "first_ns": r.first, "last_ns": r.last, "stamped": len(lat), "late": late,
		"latency_ms": map[string]any{"p50": quantile(lat, 0.5), "p99": quantile(lat, 0.99), "max": quantile(lat, 1)}}
	if c["reset"] == true {
		r.n, r.first, r.last, r.latMs = 0, 0, 0, nil
	}
	if v, ok := c["mute"].(bool); ok {
		muted.Store(v)
	}
	return res
}

// wakuMetrics reads the package's own counters from the default Prometheus registry (waku/common/
// metrics.go), e.g. "waku_rate_limits_exceeded_total{type=peer_id}" and
// "waku_rate_limits_processed_total".
func wakuMetrics() map[string]float64 {
	out := map[string]float64{}
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return out
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "waku_") {
			continue
		}
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func capsOf(p *p2p.Peer) []string {
	caps := []string{}
	for _, c := range p.Caps() {
		caps = append(caps, c.String())
	}
	return caps
}

// --- events ---

func (h *harness) peerEvents(ch chan *p2p.PeerEvent) {
	for ev := range ch {
		switch ev.Type {
		case p2p.PeerEventTypeAdd:
			m := map[string]any{"event": "peer_add", "peer": ev.Peer.String(), "remote": ev.RemoteAddress}
			for _, p := range h.srv.Peers() {
				if p.ID() == ev.Peer {
					m["enode"] = p.Node().URLv4()
					m["caps"] = capsOf(p)
					m["inbound"] = p.Inbound()
				}
			}
			h.out.emit(m)
		case p2p.PeerEventTypeDrop:
			h.out.emit(map[string]any{"event": "peer_drop", "peer": ev.Peer.String(), "remote": ev.RemoteAddress,
				"error": ev.Error})
		}
	}
}

func (h *harness) envelopeEvents(ch chan common.EnvelopeEvent) {
	for ev := range ch {
		switch ev.Event {
		case common.EventEnvelopeReceived:
			if ev.Peer == (enode.ID{}) || muted.Load() {
				continue // a bridged envelope (none here), or events muted by envelope_stats
			}
			h.out.emit(map[string]any{"event": "envelope_seen", "hash": hx(ev.Hash.Bytes()),
				"topic": hx(ev.Topic[:]), "peer": ev.Peer.String()})
		case common.EventBatchAcknowledged:
			m := map[string]any{"event": "batch_acknowledged", "peer": ev.Peer.String(), "batch": hx(ev.Batch.Bytes())}
			if errs, ok := ev.Data.([]common.EnvelopeError); ok {
				m["errors"] = envelopeErrors(errs)
			}
			h.out.emit(m)
		}
	}
}

func envelopeErrors(errs []common.EnvelopeError) []map[string]any {
	out := []map[string]any{}
	for _, e := range errs {
		out = append(out, map[string]any{"hash": hx(e.Hash.Bytes()), "code": e.Code, "description": e.Description})
	}
	return out
}

type bridge struct {
	out chan *common.Envelope // never written: nothing is injected
	in  chan *common.Envelope
}

func (b *bridge) Pipe() (<-chan *common.Envelope, chan<- *common.Envelope) { return b.out, b.in }

// drainBridge reports every envelope the node newly caches (status-go blocks on this channel).
func (h *harness) drainBridge(in chan *common.Envelope) {
	for e := range in {
		hash := e.Hash()
		h.mu.Lock()
		own := h.own[hash]
		h.mu.Unlock()
		if !own {
			recv.add(e.Data)
		}
		if muted.Load() {
			continue
		}
		h.out.emit(map[string]any{"event": "envelope", "hash": hx(hash.Bytes()), "topic": hx(e.Topic[:]),
			"data": hx(e.Data), "expiry": e.Expiry, "ttl": e.TTL, "nonce": e.Nonce, "pow": e.PoW(), "own": own})
	}
}

type mailServer struct{ h *harness }

func (m *mailServer) Archive(*common.Envelope) {}

func (m *mailServer) DeliverMail(peerID []byte, request *common.Envelope) {
	m.h.out.emit(map[string]any{"event": "p2p_request", "peer": hx(peerID), "kind": "envelope",
		"hash": hx(request.Hash().Bytes()), "topic": hx(request.Topic[:]), "data": hx(request.Data)})
}

func (m *mailServer) Deliver(peerID []byte, r common.MessagesRequest) {
	topics := []string{}
	for _, t := range r.Topics {
		topics = append(topics, hx(t))
	}
	m.h.out.emit(map[string]any{"event": "p2p_request", "peer": hx(peerID), "kind": "messages_request",
		"request_id": hx(r.ID), "from": r.From, "to": r.To, "limit": r.Limit, "cursor": hx(r.Cursor),
		"bloom": hx(r.Bloom), "topics": topics})
}

// --- the tee of a peer's waku MsgReadWriter: reports the packets the tests look at ---

type tee struct {
	rw   p2p.MsgReadWriter
	h    *harness
	peer enode.ID
}

func (t *tee) ReadMsg() (p2p.Msg, error) {
	msg, err := t.rw.ReadMsg()
	if err != nil {
		return msg, err
	}
	return t.inspect(msg, "in")
}

func (t *tee) WriteMsg(msg p2p.Msg) error {
	msg, err := t.inspect(msg, "out")
	if err != nil {
		return err
	}
	return t.rw.WriteMsg(msg)
}

const (
	statusCode             = 0
	messagesCode           = 1
	batchAcknowledgedCode  = 11
	messageResponseCode    = 12
	statusUpdateCode       = 22
	p2pRequestCompleteCode = 125
	p2pMessageCode         = 127
)

func (t *tee) inspect(msg p2p.Msg, dir string) (p2p.Msg, error) {
	switch msg.Code {
	case statusCode, messagesCode, batchAcknowledgedCode, messageResponseCode, statusUpdateCode,
		p2pRequestCompleteCode, p2pMessageCode:
	default:
		return msg, nil
	}
	data, err := io.ReadAll(msg.Payload)
	if err != nil {
		return msg, err
	}
	msg.Payload = bytes.NewReader(data)
	base := map[string]any{"peer": t.peer.String(), "dir": dir}
	switch msg.Code {
	case statusCode, statusUpdateCode:
		base["event"] = "status"
		base["code"] = msg.Code
		base["raw"] = hx(data)
		base["options"], base["keys"] = statusJSON(data)
	case messagesCode:
		var raws []rlp.RawValue
		_ = rlp.DecodeBytes(data, &raws)
		base["event"] = "messages"
		base["batch"] = hx(crypto.Keccak256(data))
		base["count"] = len(raws)
	case messageResponseCode:
		base["event"] = "message_response"
		base["raw"] = hx(data)
		var resp struct {
			Version  uint
			Response rlp.RawValue
		}
		if err := rlp.DecodeBytes(data, &resp); err == nil {
			var r common.MessagesResponse
			if err := rlp.DecodeBytes(resp.Response, &r); err == nil {
				base["version"] = resp.Version
				base["batch"] = hx(r.Hash.Bytes())
				base["errors"] = envelopeErrors(r.Errors)
			}
		}
	case batchAcknowledgedCode:
		base["event"] = "batch_ack"
		var batch gethcommon.Hash
		if err := rlp.DecodeBytes(data, &batch); err == nil {
			base["batch"] = hx(batch.Bytes())
		}
		base["raw"] = hx(data)
	case p2pMessageCode:
		base["event"] = "p2p_message"
		var envs []*common.Envelope
		hashes := []string{}
		if err := rlp.DecodeBytes(data, &envs); err == nil {
			for _, e := range envs {
				hashes = append(hashes, hx(e.Hash().Bytes()))
			}
		}
		base["hashes"] = hashes
	case p2pRequestCompleteCode:
		base["event"] = "p2p_request_complete"
		base["raw"] = hx(data)
		var payload []byte
		if err := rlp.DecodeBytes(data, &payload); err == nil {
			base["payload"] = hx(payload)
		}
	}
	t.h.out.emit(base)
	return msg, nil
}

// statusJSON decodes a Status / Status Update with the package's own v1.StatusOptions decoder and
// lists the keys in wire order (v1.StatusOptions skips unknown ones).
func statusJSON(data []byte) (map[string]any, []uint64) {
	opts := map[string]any{}
	var o v1.StatusOptions
	if err := rlp.DecodeBytes(data, &o); err != nil {
		opts["error"] = err.Error()
	} else {
		if p := o.PoWRequirementF(); p != nil {
			opts["pow"] = *p
			if math.IsInf(*p, 0) || math.IsNaN(*p) {
				opts["pow"] = fmt.Sprint(*p)
			}
		}
		if o.BloomFilter != nil {
			opts["bloom"] = hx(o.BloomFilter)
		}
		if o.LightNodeEnabled != nil {
			opts["light"] = *o.LightNodeEnabled
		}
		if o.ConfirmationsEnabled != nil {
			opts["confirmations"] = *o.ConfirmationsEnabled
		}
		if r := o.PacketRateLimits; r != nil {
			opts["rate_limits"] = []uint64{r.IPLimits, r.PeerIDLimits, r.TopicLimits}
		}
		if o.TopicInterest != nil {
			ts := []string{}
			for _, t := range o.TopicInterest {
				ts = append(ts, hx(t[:]))
			}
			opts["topic_interest"] = ts
		}
		if r := o.BytesRateLimits; r != nil {
			opts["bytes_rate_limits"] = []uint64{r.IPLimits, r.PeerIDLimits, r.TopicLimits}
		}
	}
	keys := []uint64{}
	var pairs []rlp.RawValue
	if err := rlp.DecodeBytes(data, &pairs); err == nil {
		for _, p := range pairs {
			var kv []rlp.RawValue
			if rlp.DecodeBytes(p, &kv) == nil && len(kv) >= 1 {
				var k uint64
				if rlp.DecodeBytes(kv[0], &k) == nil {
					keys = append(keys, k)
				}
			}
		}
	}
	return opts, keys
}
