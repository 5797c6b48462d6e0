// Checks dial.mjs without warren: starts two serve.mjs nodes A and B (B dials
// A), waits until A has B in its routing table, runs dial.mjs against A with B
// as the expected FIND_NODE result, and prints dial.mjs's JSON line.
//   node selftest.mjs      (or: npm run selftest)
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('.', import.meta.url))
const children = []

function start (args) {
  const child = spawn(process.execPath, args, { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(child)
  const lines = createInterface({ input: child.stdout })
  const waiters = []
  lines.on('line', (line) => {
    let msg
    try { msg = JSON.parse(line) } catch { return }
    for (const w of [...waiters]) {
      if (w.pred(msg)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(msg) }
    }
  })
  child.waitFor = (pred, ms, what) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)
    waiters.push({ pred, resolve: (m) => { clearTimeout(t); resolve(m) } })
  })
  return child
}

function cleanup () {
  for (const c of children) if (c.exitCode == null) c.kill('SIGTERM')
}

let code = 1
try {
  const a = start(['serve.mjs'])
  const aInfo = await a.waitFor((m) => m.event === 'listening', 10_000, 'A listening')
  const aAddr = `${aInfo.addrs[0]}`
  const b = start(['serve.mjs', aAddr])
  const bInfo = await b.waitFor((m) => m.event === 'listening', 10_000, 'B listening')
  await a.waitFor((m) => m.event === 'routing_table' && m.size >= 1, 15_000, 'B in A\'s routing table')
  console.error(`A=${aInfo.peer_id} B=${bInfo.peer_id}`)

  const dial = spawn(process.execPath, ['dial.mjs', aAddr, bInfo.peer_id], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  dial.stdout.on('data', (d) => { out += d })
  const rc = await new Promise((resolve) => dial.on('exit', resolve))
  process.stdout.write(out)
  const res = JSON.parse(out.trim())
  const good = rc === 0 && res.ok && res.remote_peer === aInfo.peer_id &&
    res.protocols.includes('/warren/kad/1.0.0') && res.protocols.includes('/ipfs/ping/1.0.0') &&
    res.protocols.includes('/ipfs/id/1.0.0') && typeof res.ping_ms === 'number' &&
    res.find_node_peers.includes(bInfo.peer_id)
  console.error(good ? 'SELFTEST PASS' : `SELFTEST FAIL (dial.mjs rc=${rc})`)
  code = good ? 0 : 1
} catch (err) {
  console.error('SELFTEST ERROR', err)
} finally {
  cleanup()
}
process.exit(code)
