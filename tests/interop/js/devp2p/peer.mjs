// A third-party Waku v1 peer for interop tests: @ethereumjs/devp2p's RLPx (EIP-8 handshake, framing,
// snappy at p2p v5) plus a minimal `waku/1` capability written here (ethereumjs ships none).
// Protocol: JSON lines. stdin: {"id", "cmd", ...}; stdout: replies {"id", "ok", ...} and events {"event", ...}.
import * as readline from 'node:readline';
import { RLPx } from '@ethereumjs/devp2p';
import { RLP } from '@ethereumjs/rlp';
import { bytesToHex, hexToBytes } from '@ethereumjs/util';
import { keccak256 } from 'ethereum-cryptography/keccak.js';
import * as snappy from 'snappyjs';

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const hex = (b) => bytesToHex(b).slice(2);
const unhex = (s) => hexToBytes(s.startsWith('0x') ? s : '0x' + s);
const peers = new Map(); // peer id hex -> { peer, waku }
let rlpx = null;
let statusOptions = { pow: 0.002, light: false };

function floatBits(f) {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, f);
  let b = new Uint8Array(dv.buffer);
  let i = 0;
  while (i < b.length && b[i] === 0) i++;
  return b.subarray(i); // canonical RLP integer
}

// waku/1: 128 message codes (status-go NumberOfMessageCodes). Status = 0, Messages = 1.
class Waku {
  constructor(version, peer, send) {
    this._version = version;
    this._peer = peer;
    this._send = send;
    this._id = hex(peer.getId());
    this.sendRaw(0, RLP.encode([
      [0, floatBits(statusOptions.pow)],
      [1, new Uint8Array(64).fill(0xff)],
      [2, statusOptions.light ? 1 : new Uint8Array(0)],
      [3, new Uint8Array(0)],
    ]));
  }
  sendRaw(code, data) {
    // The subprotocol compresses itself when the peer speaks p2p >= 5 (as ethereumjs' ETH does).
    if (this._peer._hello !== null && this._peer._hello.protocolVersion >= 5) data = snappy.compress(data);
    this._send(code, data);
  }
  _handleMessage(code, data) {
    if (code === 0) {
      emit({ event: 'waku_status', peer: this._id, hex: hex(data) });
      return;
    }
    emit({ event: 'waku_message', peer: this._id, code, hex: hex(data) });
    if (code === 1) {
      const envelopes = RLP.decode(data);
      for (const env of envelopes) {
        const raw = RLP.encode(env);
        emit({ event: 'envelope', peer: this._id, hex: hex(raw), hash: hex(keccak256(raw)) });
      }
    }
  }
}
const WAKU1 = { name: 'waku', version: 1, length: 128, constructor: Waku };

function parseEnode(url) {
  const m = /^enode:\/\/([0-9a-fA-F]{128})@([^:]+):(\d+)$/.exec(url);
  if (!m) throw new Error(`bad enode ${url}`);
  return { id: unhex(m[1]), address: m[2], tcpPort: Number(m[3]) };
}

async function handle(msg) {
  switch (msg.cmd) {
    case 'start': {
      if (msg.pow !== undefined) statusOptions.pow = msg.pow;
      const host = msg.host ?? '127.0.0.1';
      if (msg.light !== undefined) statusOptions.light = msg.light;
      rlpx = new RLPx(unhex(msg.privateKey), {
        dpt: null, maxPeers: 25, capabilities: [WAKU1], listenPort: msg.port ?? null,
      });
      rlpx.events.on('peer:added', (peer) => {
        const id = hex(peer.getId());
        const waku = peer.getProtocols()[0];
        peers.set(id, { peer, waku });
        const h = peer.getHelloMessage();
        emit({ event: 'peer_added', peer: id, hello: {
          version: h.protocolVersion, clientId: typeof h.clientId === 'string' ? h.clientId : new TextDecoder().decode(h.clientId),
          caps: h.capabilities.map((c) => [c.name, c.version]), port: h.port } });
      });
      rlpx.events.on('peer:removed', (peer, reason, disconnectWe) => {
        const id = peer.getId() ? hex(peer.getId()) : null;
        if (id) peers.delete(id);
        emit({ event: 'peer_removed', peer: id, reason: Number(reason), byUs: !!disconnectWe });
      });
      rlpx.events.on('peer:error', (peer, err) => emit({ event: 'error', message: String(err && err.stack || err) }));
      rlpx.events.on('error', (err) => emit({ event: 'error', message: String(err) }));
      if (msg.port !== undefined) {
        await new Promise((resolve) => { rlpx.events.once('listening', resolve); rlpx.listen(msg.port, host); });
      }
      return { enode: `enode://${hex(rlpx.id)}@${host}:${msg.port ?? 0}` };
    }
    case 'connect':
      await rlpx.connect(parseEnode(msg.enode));
      return {};
    case 'send': {
      const p = peers.get(msg.peer);
      if (!p) throw new Error(`no peer ${msg.peer}`);
      const data = unhex(msg.hex);
      p.waku.sendRaw(msg.code, data);
      // For a Messages packet, report the keccak256 of each envelope as computed here in JS.
      const hashes = msg.code === 1 ? RLP.decode(data).map((env) => hex(keccak256(RLP.encode(env)))) : [];
      return { hashes };
    }
    case 'peers':
      return { peers: [...peers.keys()] };
    case 'disconnect': {
      const p = peers.get(msg.peer);
      if (p) p.peer.disconnect(msg.reason ?? 8);
      return {};
    }
    case 'stop':
      if (rlpx) rlpx.destroy();
      setTimeout(() => process.exit(0), 100);
      return {};
    default:
      throw new Error(`unknown command ${msg.cmd}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  if (!line.trim()) return;
  let msg;
  try { msg = JSON.parse(line); } catch (e) { emit({ event: 'error', message: `bad json: ${line}` }); return; }
  try { emit({ id: msg.id, ok: true, ...(await handle(msg)) }); }
  catch (e) { emit({ id: msg.id, ok: false, error: String(e && e.stack || e) }); }
});
rl.on('close', () => { if (rlpx) rlpx.destroy(); setTimeout(() => process.exit(0), 50); });
