// Interop probe: a js-libp2p peer dials a target (a warren node, or any libp2p
// node speaking the same protocols) over TCP, completes Noise + Yamux, waits for
// identify, pings, and sends one Kademlia FIND_NODE request to the target on
// KAD_PROTOCOL. It prints exactly one JSON line on stdout and exits 0 when every
// step worked (and every EXPECTED_PEER_ID came back from FIND_NODE), 1 otherwise.
//
//   node dial.mjs TARGET_MULTIADDR [EXPECTED_PEER_ID...]
//
// TARGET_MULTIADDR must end in /p2p/<peer id>. Diagnostics go to stderr; set
// DEBUG=libp2p:* for js-libp2p's own logs (also stderr).
//
// Output fields: ok, target, local_peer, remote_peer, remote_addr, encryption,
// muxer, agent_version, protocol_version, protocols, listen_addrs, ping_ms,
// ping_attempts, dht_contact_added, find_node_key, find_node_peers, find_node_peer_addrs, expected_peers,
// missing_expected_peers, steps, error.
import './polyfill.mjs'

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { kadDHT, MessageType, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

export const KAD_PROTOCOL = process.env.KAD_PROTOCOL ?? '/warren/kad/1.0.0'
const HARD_TIMEOUT_MS = 30_000
const DIAL_TIMEOUT_MS = 10_000
const IDENTIFY_TIMEOUT_MS = 10_000
const PING_TIMEOUT_MS = 5_000
const FIND_NODE_TIMEOUT_MS = 10_000
const DHT_CONTACT_TIMEOUT_MS = 5_000
const PING_ATTEMPTS = 3
const STOP_TIMEOUT_MS = 3_000

const result = {
  ok: false,
  target: process.argv[2] ?? null,
  local_peer: null,
  remote_peer: null,
  remote_addr: null,
  encryption: null,
  muxer: null,
  agent_version: null,
  protocol_version: null,
  protocols: [],
  listen_addrs: [],
  ping_ms: null,
  ping_attempts: 0,
  dht_contact_added: null,
  find_node_key: null,
  find_node_peers: [],
  find_node_peer_addrs: {},
  expected_peers: process.argv.slice(3),
  missing_expected_peers: [],
  steps: [],
  error: null
}

let printed = false
let node = null

function log (...args) {
  process.stderr.write(`[dial.mjs] ${args.join(' ')}\n`)
}

function finish (code) {
  if (printed) {
    return
  }
  printed = true
  // stdout is a pipe or file here; both are written synchronously on Linux, so
  // the line is out before process.exit.
  process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(code)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function fail (msg) {
  if (result.error == null) {
    result.error = msg
  }
}

async function withTimeout (promise, ms, what) {
  let timer
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`${what} timed out after ${ms} ms`)) }, ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function stopNode () {
  if (node == null) {
    return
  }
  const n = node
  node = null
  try {
    await withTimeout(n.stop(), STOP_TIMEOUT_MS, 'node.stop()')
  } catch (err) {
    log('stop:', err.message)
  }
}

/** Waits until `peer` is in kad-dht's routing table; false on timeout. */
async function waitForDhtContact (dht, peer, ms) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await dht.routingTable.find(peer) != null) {
      return true
    }
    await sleep(50)
  }
  return false
}

// Hard limit on the whole run: report what we have and exit.
const watchdog = setTimeout(() => {
  fail(`hard timeout after ${HARD_TIMEOUT_MS} ms (steps done: ${result.steps.join(',') || 'none'})`)
  result.ok = false
  finish(1)
}, HARD_TIMEOUT_MS)

process.on('unhandledRejection', (err) => {
  log('unhandled rejection:', err?.stack ?? String(err))
})

async function main () {
  if (result.target == null) {
    throw new Error('usage: node dial.mjs TARGET_MULTIADDR [EXPECTED_PEER_ID...]')
  }
  const target = multiaddr(result.target)
  const targetPeer = target.getPeerId()
  if (targetPeer == null) {
    throw new Error(`target multiaddr ${result.target} has no /p2p/<peer id> component`)
  }

  node = await createLibp2p({
    addresses: { listen: [] },
    transports: [tcp()],
    // No background keep-alive pings: the only pings on the connection are
    // the one below and kad-dht's contact check (see step 3).
    connectionMonitor: { enabled: false },
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({
        protocol: KAD_PROTOCOL,
        clientMode: true,
        // keep loopback addresses in FIND_NODE answers (default strips private ones)
        peerInfoMapper: passthroughMapper,
        // no background self-lookups: the only FIND_NODE is the one sent below
        querySelfInterval: 3_600_000,
        initialQuerySelfInterval: 3_600_000
      })
    }
  })
  result.local_peer = node.peerId.toString()
  log('local peer', result.local_peer, '-> dialling', result.target)

  // Identify runs automatically on every new connection; listen before dialling.
  let onIdentify
  const identified = new Promise((resolve) => {
    onIdentify = (evt) => {
      if (evt.detail.peerId.toString() === targetPeer) {
        resolve(evt.detail)
      }
    }
    node.addEventListener('peer:identify', onIdentify)
  })

  // 1. TCP + Noise + Yamux
  const conn = await node.dial(target, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
  result.remote_peer = conn.remotePeer.toString()
  result.remote_addr = conn.remoteAddr.toString()
  result.encryption = conn.encryption ?? null
  result.muxer = conn.multiplexer ?? null
  result.steps.push('dial')
  log('connected to', result.remote_peer, 'encryption', result.encryption, 'muxer', result.muxer)
  if (result.remote_peer !== targetPeer) {
    throw new Error(`connected to ${result.remote_peer}, expected ${targetPeer}`)
  }

  // 2. identify
  let info
  try {
    info = await withTimeout(identified, IDENTIFY_TIMEOUT_MS, 'identify (peer:identify event)')
  } catch (err) {
    log(err.message, '- running identify explicitly')
    info = await withTimeout(node.services.identify.identify(conn), IDENTIFY_TIMEOUT_MS, 'identify')
  } finally {
    node.removeEventListener('peer:identify', onIdentify)
  }
  result.agent_version = info.agentVersion ?? null
  result.protocol_version = info.protocolVersion ?? null
  result.protocols = [...(info.protocols ?? [])].sort()
  result.listen_addrs = (info.listenAddrs ?? []).map((a) => a.toString())
  result.steps.push('identify')
  log('identify:', result.agent_version, result.protocol_version, JSON.stringify(result.protocols))

  // 3. ping (/ipfs/ping/1.0.0) over the existing connection.
  // Once identify shows the target speaks KAD_PROTOCOL, kad-dht pings it (with
  // /ipfs/ping) before adding it to its routing table. The ping spec allows one
  // ping stream per peer and rust-libp2p resets the older inbound ping stream
  // when a second one opens, so wait for that check to finish first, and retry
  // a ping that is reset anyway.
  result.dht_contact_added = await waitForDhtContact(node.services.dht, conn.remotePeer, DHT_CONTACT_TIMEOUT_MS)
  log('target in kad-dht routing table:', result.dht_contact_added)
  for (;;) {
    result.ping_attempts++
    try {
      result.ping_ms = await node.services.ping.ping(conn.remotePeer, {
        signal: AbortSignal.timeout(PING_TIMEOUT_MS)
      })
      break
    } catch (err) {
      log(`ping attempt ${result.ping_attempts} failed: ${err.name}: ${err.message}`)
      if (result.ping_attempts >= PING_ATTEMPTS) {
        throw new Error(`ping failed ${PING_ATTEMPTS} times, last: ${err.name}: ${err.message}`)
      }
      await sleep(200)
    }
  }
  result.steps.push('ping')
  log('ping rtt', result.ping_ms, 'ms')

  // 4. one FIND_NODE request, sent to the target itself on KAD_PROTOCOL.
  // network.sendRequest opens a stream to exactly this peer, writes the
  // request and reads one response; no iterative lookup is involved.
  const dht = node.services.dht
  const key = node.peerId.toMultihash().bytes
  result.find_node_key = Buffer.from(key).toString('hex')
  let response = null
  const signal = AbortSignal.timeout(FIND_NODE_TIMEOUT_MS)
  for await (const evt of dht.network.sendRequest(conn.remotePeer, { type: MessageType.FIND_NODE, key }, { signal })) {
    if (evt.name === 'QUERY_ERROR') {
      throw new Error(`FIND_NODE to ${result.remote_peer} on ${KAD_PROTOCOL} failed: ${evt.error?.message ?? evt.error}`)
    }
    if (evt.name === 'PEER_RESPONSE') {
      response = evt
    }
  }
  if (response == null) {
    throw new Error(`FIND_NODE to ${result.remote_peer} on ${KAD_PROTOCOL}: no response`)
  }
  if (response.messageType !== MessageType.FIND_NODE) {
    throw new Error(`FIND_NODE answered with message type ${response.messageName ?? response.messageType}`)
  }
  for (const peer of response.closer) {
    const id = peer.id.toString()
    result.find_node_peers.push(id)
    result.find_node_peer_addrs[id] = peer.multiaddrs.map((a) => a.toString())
  }
  result.steps.push('find_node')
  log('FIND_NODE returned', result.find_node_peers.length, 'peer(s):', result.find_node_peers.join(' '))

  result.missing_expected_peers = result.expected_peers.filter((p) => !result.find_node_peers.includes(p))
  if (result.missing_expected_peers.length > 0) {
    throw new Error(`FIND_NODE results lack expected peer(s): ${result.missing_expected_peers.join(' ')}`)
  }
}

let code = 1
try {
  await main()
  result.ok = true
  code = 0
} catch (err) {
  fail(err?.message ?? String(err))
  log('error:', err?.stack ?? String(err))
}
clearTimeout(watchdog)
await stopNode()
finish(code)
