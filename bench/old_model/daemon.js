// A model of the old daemon's answer to a fileUpload request for a hash it lacks: strict
// checks, a stat of the store path and a read of the linked-file record (both fail),
// then a `not-found` reply. It never uploads (a file it finds stays `queued`).
// Used only by bench/proxy_relay.py (--daemons old-model, --against old-model).
// Usage: node daemon.js URL SECRET [NAME]; prints READY once acknowledged.
'use strict'
const fs = require('fs')
const os = require('os')
const WebSocket = require('ws')
const { isString, isNumber, anything, equals, optional, matches } = require('./check')

const [url, secret, name = 'bench1'] = process.argv.slice(2)
const kacheryDir = process.env.KACHERY_CLOUD_DIR || `${os.homedir()}/.kachery-cloud`
const requestFromClient = {
  type: equals('requestFromClient'), resourceName: isString, zone: isString,
  request: anything, timeoutMsec: isNumber, requestId: optional(isString)
}
const fileUpload = { type: equals('fileUpload'), uri: isString, timeoutMsec: isNumber }
const jobs = {} // uri -> job: looked up first, as the old daemon did; empty in the benchmark

function shardedPath (kind, h) {
  return `${kacheryDir}/${kind}/${h.slice(0, 2)}/${h.slice(2, 4)}/${h.slice(4, 6)}/${h}`
}

async function findFile (uri) {
  const h = uri.split('/')[2]
  try {
    const st = await fs.promises.stat(shardedPath('sha1', h))
    return { path: shardedPath('sha1', h), size: st.size }
  } catch (err) {}
  try {
    const rec = JSON.parse(await fs.promises.readFile(shardedPath('linked_files/sha1', h), 'utf8'))
    const st = await fs.promises.stat(rec.path)
    return st.size === rec.size ? { path: rec.path, size: st.size } : undefined
  } catch (err) {
    return undefined
  }
}

function validUri (uri) {
  const a = uri.split('/')
  return a.length === 3 && a[0] === 'sha1:' && a[1] === '' && a[2].length === 40
}

async function answer (ws, msg) {
  const r = msg.request
  let response
  let error
  if (!matches(r, fileUpload) || !validUri(r.uri)) {
    error = 'Invalid kachery resource request'
  } else if (jobs[r.uri]) {
    response = { type: 'fileUpload', status: jobs[r.uri].status }
  } else {
    const found = await findFile(r.uri)
    response = { type: 'fileUpload', status: found ? { status: 'queued', size: found.size, bytesUploaded: 0 } : { status: 'not-found' } }
  }
  ws.send(JSON.stringify({ type: 'responseToClient', requestId: msg.requestId, response: response || {}, error }))
}

const ws = new WebSocket(url.replace('http:', 'ws:'))
let acknowledged = false
ws.on('open', () => {
  ws.send(JSON.stringify({ type: 'initialize', resourceName: name, zone: 'default', proxySecret: secret }))
  const ping = () => ws.send(JSON.stringify({ type: 'ping' }))
  setTimeout(() => { ping(); setInterval(ping, 20000) }, 10000)
})
ws.on('message', (data) => {
  let msg
  try { msg = JSON.parse(data.toString()) } catch (err) { ws.close(); return }
  if (matches(msg, { type: equals('acknowledge') })) { acknowledged = true; console.log('READY'); return }
  if (!acknowledged) { ws.close(); return }
  if (matches(msg, requestFromClient)) answer(ws, msg)
})
ws.on('close', () => process.exit(1))
