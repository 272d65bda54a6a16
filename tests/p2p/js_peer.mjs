// A js-libp2p peer for the interoperability test (tests/p2p/test_interop_js.py).
//
// TCP, Noise, Yamux, identify, ping, kad-dht on /dolphin/kad/1.0.0, gossipsub and circuit relay v2.
// It joins through the relay given with --relay (a `dolphin relay`), reserves a slot there, subscribes to
// --topic and publishes "js:<n>" on it every half second, looks up --find (a peer id) in the DHT, and
// reports everything as one JSON object per line on stdout for the Python side to read.
// js-libp2p 3 uses Promise.withResolvers (Node 22); this machine's Node is 20. The polyfill must run
// before the libraries load, hence dynamic imports below.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { kadDHT, passthroughMapper } = await import('@libp2p/kad-dht')
const { gossipsub } = await import('@libp2p/gossipsub')
const { circuitRelayTransport } = await import('@libp2p/circuit-relay-v2')
const { peerIdFromString } = await import('@libp2p/peer-id')

const args = {}
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1]
const say = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0', `${args.relay}/p2p-circuit`] },
  transports: [tcp(), circuitRelayTransport()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    // Every peer here is on 127.0.0.1: keep the private addresses the DHT hands out (the default drops them).
    dht: kadDHT({ protocol: '/dolphin/kad/1.0.0', clientMode: false, peerInfoMapper: passthroughMapper }),
    // Circuit relay v2 connections are "limited"; js-libp2p runs no protocol on them unless told to.
    pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false, runOnLimitedConnection: true })
  }
})

node.services.pubsub.subscribe(args.topic)
node.services.pubsub.addEventListener('message', (event) => {
  const { topic, data } = event.detail
  say('message', { topic, data: new TextDecoder().decode(data), from: event.detail.from?.toString() })
})
node.addEventListener('self:peer:update', () => {
  say('addrs', { addrs: node.getMultiaddrs().map((a) => a.toString()) })
})

await node.start()
say('ready', { peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map((a) => a.toString()) })

let counter = 0
const publish = setInterval(() => {
  counter += 1
  node.services.pubsub.publish(args.topic, new TextEncoder().encode(`js:${counter}`)).catch(() => {})
}, 500)

if (args.find) {
  const target = peerIdFromString(args.find)
  for (let attempt = 0; attempt < 60; attempt++) {
    try {
      const found = await node.peerRouting.findPeer(target, { signal: AbortSignal.timeout(5000) })
      if (found.multiaddrs.length > 0) { // an answer without addresses is no answer: ask again
        say('found', { peerId: found.id.toString(), addrs: found.multiaddrs.map((a) => a.toString()) })
        break
      }
      say('find-failed', { error: 'found without addresses' })
      await new Promise((resolve) => setTimeout(resolve, 500))
    } catch (error) {
      say('find-failed', { error: String(error) })
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
  }
}

const stop = async () => {
  clearInterval(publish)
  await node.stop()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
