// A js-waku relay node (@waku/relay 0.0.14 + @waku/sdk 0.0.27) for interop tests, on TCP + yamux.
// JSON lines: stdin {"id","cmd",...}; stdout replies {"id","ok",...} and events {"event",...}.
import * as readline from 'node:readline';
import { yamux } from '@chainsafe/libp2p-yamux';
import { tcp } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import { proto_message } from '@waku/proto';
import { WakuNode, createDecoder, createEncoder, defaultLibp2p, relay, waitForRemotePeer, Protocols } from '@waku/sdk';

const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const hex = (b) => Buffer.from(b).toString('hex');
let node = null;
let pubsubTopic = null;

async function handle(msg) {
  switch (msg.cmd) {
    case 'start': {
      pubsubTopic = msg.pubsubTopic;
      const libp2p = await defaultLibp2p([pubsubTopic], relay.wakuGossipSub({}), {
        transports: [tcp()], streamMuxers: [yamux()],
        addresses: { listen: [`/ip4/${msg.host ?? '127.0.0.1'}/tcp/0`] }, filterMultiaddrs: false, hideWebSocketInfo: true,
      }, 'js-waku-interop');
      node = new WakuNode([pubsubTopic], {}, libp2p, { relay: true });
      await node.start();
      const decoder = createDecoder(msg.contentTopic, pubsubTopic);
      await node.relay.subscribe([decoder], (m) => emit({
        event: 'message', contentTopic: m.contentTopic, payload: hex(m.payload),
        timestamp: m.timestamp ? m.timestamp.getTime() : null, version: m.version ?? null,
      }));
      // Every WakuMessage on the topic, whatever its version (the version-0 decoder above ignores
      // version 1, i.e. RFC 26 payloads, which is what a bridge publishes).
      node.relay.gossipSub.addEventListener('gossipsub:message', (evt) => {
        const { msg } = evt.detail;
        if (msg.topic !== pubsubTopic) return;
        const wm = proto_message.WakuMessage.decode(msg.data);
        emit({ event: 'raw', contentTopic: wm.contentTopic, payload: hex(wm.payload),
               version: wm.version ?? null, timestamp: wm.timestamp !== undefined ? String(wm.timestamp) : null });
      });
      return { peerId: node.libp2p.peerId.toString(), addrs: node.libp2p.getMultiaddrs().map(String) };
    }
    case 'dial':
      await node.dial(multiaddr(msg.addr));
      await waitForRemotePeer(node, [Protocols.Relay], 20000);
      return {};
    case 'meshPeers':
      return { peers: node.relay.gossipSub.getMeshPeers(pubsubTopic) };
    case 'send': {
      const encoder = createEncoder({ contentTopic: msg.contentTopic, pubsubTopic });
      const res = await node.relay.send(encoder, { payload: Buffer.from(msg.payload, 'hex') });
      return { recipients: res.successes.length, failures: res.failures ?? [] };
    }
    case 'sendMany': {
      // Paced publishing for drills: one message every intervalMs (>= 100 msg/s at 10 ms), in order.
      // Reply: indices of the payloads no peer accepted (those were not sent anywhere).
      const encoder = createEncoder({ contentTopic: msg.contentTopic, pubsubTopic });
      const interval = msg.intervalMs ?? 10;
      const failed = [];
      const t0 = Date.now();
      for (let i = 0; i < msg.payloads.length; i++) {
        try {
          const res = await node.relay.send(encoder, { payload: Buffer.from(msg.payloads[i], 'hex') });
          if (res.successes.length === 0) failed.push(i);
        } catch (e) { failed.push(i); }
        const wait = t0 + (i + 1) * interval - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      return { failed, elapsedMs: Date.now() - t0 };
    }
    case 'stop':
      if (node) await node.stop();
      setTimeout(() => process.exit(0), 50);
      return {};
    default:
      throw new Error(`unknown command ${msg.cmd}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  if (!line.trim()) return;
  let msg;
  try { msg = JSON.parse(line); } catch { emit({ event: 'error', message: `bad json: ${line}` }); return; }
  try { emit({ id: msg.id, ok: true, ...(await handle(msg)) }); }
  catch (e) { emit({ id: msg.id, ok: false, error: String(e && e.stack || e) }); }
});
rl.on('close', async () => { try { if (node) await node.stop(); } finally { process.exit(0); } });
