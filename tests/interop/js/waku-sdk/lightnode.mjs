// A stock js-waku light node (@waku/sdk 0.0.36: ws + noise + mplex) for interop tests.
// Run with `node --import ./polyfill.mjs lightnode.mjs` on Node 20.
// JSON lines: stdin {"id","cmd",...}; stdout replies {"id","ok",...} and events {"event",...}.
// Commands: start {clusterId, numShardsInCluster, wssOnly} | dial {addr} | lightpush {contentTopic, payload}
// | store {contentTopic, pageSize} | subscribe {contentTopic} | stop.  Filter pushes arrive as
// {"event":"filter", contentTopic, payload, version, timestamp (ns string), hash}.
import * as readline from 'node:readline';
import { multiaddr } from '@multiformats/multiaddr';
import { createLightNode, DecodedMessage, Protocols } from '@waku/sdk';

const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const hex = (b) => Buffer.from(b).toString('hex');
let node = null;

// The SDK's version-0 decoder returns undefined for version 1 (26/WAKU2-PAYLOAD), which is what a
// bridge publishes for v1 traffic: accept every version, as an application would for raw reads.
function anyVersion(decoder) {
  return {
    contentTopic: decoder.contentTopic,
    routingInfo: decoder.routingInfo,
    get pubsubTopic() { return decoder.pubsubTopic; },
    fromWireToProtoObj: (bytes) => decoder.fromWireToProtoObj(bytes),
    fromProtoObj: async (pubsubTopic, proto) => new DecodedMessage(pubsubTopic, proto),
  };
}

const describe = (m) => ({
  contentTopic: m.contentTopic, payload: hex(m.payload), version: m.version ?? null,
  timestamp: m.proto.timestamp !== undefined ? String(m.proto.timestamp) : null,
  pubsubTopic: m.pubsubTopic, hash: m.hashStr,
});

async function handle(msg) {
  switch (msg.cmd) {
    case 'start': {
      node = await createLightNode({
        defaultBootstrap: false,
        networkConfig: { clusterId: msg.clusterId, numShardsInCluster: msg.numShardsInCluster },
        // wssOnly: the SDK's own default outside tests, @libp2p/websockets filters.wss (what a page
        // served over https gets: it may open wss:// only); else every ws and wss address.
        libp2p: msg.wssOnly ? { hideWebSocketInfo: true } : { filterMultiaddrs: false },
      });
      await node.start();
      return { peerId: node.libp2p.peerId.toString() };
    }
    case 'dial': {
      await node.dial(multiaddr(msg.addr));
      const want = (msg.protocols ?? ["lightpush", "filter", "store"]).map((p) => ({ lightpush: Protocols.LightPush, filter: Protocols.Filter, store: Protocols.Store })[p]);
      await node.waitForPeers(want, msg.timeoutMs ?? 20000);
      const peers = await node.getConnectedPeers();
      return { peers: peers.map((p) => ({ id: p.id.toString(), protocols: p.protocols })) };
    }
    case 'lightpush': {
      const encoder = node.createEncoder({ contentTopic: msg.contentTopic });
      // "No peer available" means the SDK's peer manager selected nobody, so nothing was sent (seen
      // on a loaded 2-core machine while the SDK still waits for our metadata answer): retrying
      // then cannot double a message.  Any other failure is reported to the test as it is.
      let res;
      let attempt = 0;
      for (;;) {
        attempt++;
        res = await node.lightPush.send(encoder, { payload: Buffer.from(msg.payload, 'hex') },
          { autoRetry: false });
        const none = res.successes.length === 0
          && (res.failures ?? []).every((f) => String(f.error) === 'No peer available');
        if (!none || attempt >= 8) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      return { successes: res.successes.map(String), failures: (res.failures ?? []).map((f) => String(f.error)),
               pubsubTopic: encoder.pubsubTopic, attempts: attempt };
    }
    case 'store': {
      const decoder = anyVersion(node.createDecoder({ contentTopic: msg.contentTopic }));
      const hashes = [];
      const pageSizes = [];
      for await (const page of node.store.queryGenerator([decoder], {
        paginationLimit: msg.pageSize ?? 10, paginationForward: true })) {
        const msgs = (await Promise.all(page)).filter((m) => m !== undefined);
        pageSizes.push(msgs.length);
        for (const m of msgs) hashes.push(m.hashStr);
      }
      return { count: hashes.length, pages: pageSizes.length, pageSizes, hashes };
    }
    case 'subscribe': {
      const decoder = anyVersion(node.createDecoder({ contentTopic: msg.contentTopic }));
      // The SDK's subscribe() answers false when its peer manager selects no filter peer at that
      // moment (seen on a loaded 2-core machine right after waitForPeers: "Found 0 qualifying
      // peers"; a peer unlocked in the last 10 s is skipped).  A failed attempt still records the
      // content topic, so a plain retry would be a no-op: unsubscribe, wait, and try afresh, as an
      // application would.  Attempts are reported to the test.
      for (let attempt = 1; attempt <= 8; attempt++) {
        const ok = await node.filter.subscribe(decoder, (m) => emit({ event: 'filter', ...describe(m) }));
        if (ok) return { attempts: attempt };
        process.stderr.write(`filter subscribe attempt ${attempt} failed\n`);
        try { await node.filter.unsubscribe(decoder); } catch { /* nothing was subscribed */ }
        await new Promise((r) => setTimeout(r, 1500));
      }
      throw new Error('filter subscription failed (8 attempts)');
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
