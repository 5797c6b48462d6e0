// A js-libp2p node in Kademlia server mode on KAD_PROTOCOL, used by
// selftest.mjs to check dial.mjs without warren:
//
//   node serve.mjs [BOOTSTRAP_MULTIADDR]
//
// Listens on 127.0.0.1 (random TCP port) and prints JSON lines on stdout:
//   {"event":"listening","peer_id":...,"addrs":[...]}
//   {"event":"routing_table","size":N}        (whenever the size changes)
// Runs until SIGTERM/SIGINT.
import './polyfill.mjs'

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const KAD_PROTOCOL = process.env.KAD_PROTOCOL ?? '/warren/kad/1.0.0'

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    dht: kadDHT({ protocol: KAD_PROTOCOL, clientMode: false, peerInfoMapper: passthroughMapper })
  }
})
emit({ event: 'listening', peer_id: node.peerId.toString(), addrs: node.getMultiaddrs().map((a) => a.toString()) })

let lastSize = -1
const timer = setInterval(() => {
  const size = node.services.dht.routingTable.size
  if (size !== lastSize) {
    lastSize = size
    emit({ event: 'routing_table', size })
  }
}, 100)

if (process.argv[2] != null) {
  await node.dial(multiaddr(process.argv[2]))
}

const shutdown = async () => {
  clearInterval(timer)
  await node.stop().catch(() => {})
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
